import pytest

from bfr_fast.data import digits, mnist5k


@pytest.fixture(scope="session")
def digits_data():
    return digits()


@pytest.fixture(scope="session")
def mnist5k_data():
    return mnist5k()
