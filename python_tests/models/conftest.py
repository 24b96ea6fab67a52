from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn


def _perturb_zero_parameters(model: nn.Module, std: float = 0.1) -> nn.Module:
    """Gives every all-zero parameter random values, as training would, so that no branch is dead."""
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(std * torch.randn(p.shape, generator=generator))
    return model


def _grads_after_training_steps(
    model: nn.Module, inputs: Callable[[], tuple[Tensor, Tensor, Tensor | None]], steps: int = 3
) -> dict[str, Tensor | None]:
    """Takes ``steps - 1`` SGD steps on a regression loss from the model's own init, then returns the
    gradients of one more backward pass. Zero-initialised layers in series need a step each before the
    gradient reaches the layers behind them."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    grads: dict[str, Tensor | None] = {}
    for step in range(steps):
        optimizer.zero_grad()
        x, t, y = inputs()
        loss = (model(x, t, y) - torch.ones_like(x)).square().mean()
        loss.backward()
        if step < steps - 1:
            optimizer.step()
    for name, p in model.named_parameters():
        grads[name] = p.grad
    return grads


@pytest.fixture
def perturb_zero_parameters():
    return _perturb_zero_parameters


@pytest.fixture
def grads_after_training_steps():
    return _grads_after_training_steps


@pytest.fixture(autouse=True)
def single_thread():
    # These models are tiny: a second thread gains nothing and, on a busy 2-core machine, OpenMP's
    # spin-waiting turns milliseconds into seconds per test.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
