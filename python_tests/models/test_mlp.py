"""MLP-specific tests; the velocity-model contract shared with UNet and SiT is in test_velocity_contract.py."""

import pytest
import torch

from bfr_fast.models import MLP

DIM = 12


def make(seed: int = 0, **overrides) -> MLP:
    torch.manual_seed(seed)
    return MLP(**{"dim": DIM, "hidden": 32, "depth": 2, "time_embed_dim": 16, **overrides})


class TestInputErrors:
    @pytest.mark.parametrize("shape", [(2, DIM + 1), (2, 3, 4), (DIM,)])
    def test_wrong_shape(self, shape):
        with pytest.raises(ValueError, match=rf"x must have shape \(B, {DIM}\)"):
            make()(torch.randn(shape), 0.5)

    @pytest.mark.parametrize(
        ("overrides", "name"),
        [(dict(dim=0), "dim"), (dict(hidden=0), "hidden"), (dict(depth=0), "depth"), (dict(dropout=-0.1), "dropout"),
         (dict(time_embed_dim=1), "time_embed_dim")],
    )
    def test_bad_constructor_argument_is_named(self, overrides, name):
        with pytest.raises(ValueError, match=name):
            make(**overrides)
