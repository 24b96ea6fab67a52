"""UNet-specific tests; the velocity-model contract shared with SiT and MLP is in test_velocity_contract.py."""

import pytest
import torch

from bfr_fast.models import UNet, group_count
from bfr_fast.models.unet import AttentionBlock

# Small widths keep the file fast; the structure (levels, odd sizes, attention) is what is tested.
DIGITS = dict(in_channels=1, model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(2,))


def make(seed: int = 0, **overrides) -> UNet:
    torch.manual_seed(seed)
    return UNet(**{**DIGITS, **overrides})


@pytest.mark.parametrize(
    ("size", "overrides"),
    [
        ((8, 8), {}),
        ((28, 28), dict(channel_mult=(1, 2, 2), attention_resolutions=(2, 4))),  # 28 -> 14 -> 7
        ((28, 28), dict(channel_mult=(1, 2, 2, 2), attention_resolutions=(8,))),  # ... -> 7 -> 4 and back
        ((32, 32), dict(in_channels=3, channel_mult=(1, 2, 2), num_res_blocks=2)),
        ((12, 20), dict(channel_mult=(1, 1, 2), attention_resolutions=())),  # 12x20 -> 6x10 -> 3x5
        ((7, 7), dict(channel_mult=(1, 2, 2, 2))),  # 7 -> 4 -> 2 -> 1
    ],
)
def test_output_shape(perturb_zero_parameters, size, overrides):
    model = perturb_zero_parameters(make(**overrides, num_classes=10))
    x = torch.randn(3, model.in_channels, *size)
    out = model(x, torch.rand(3), torch.tensor([0, 5, 10]))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_attention_is_placed_at_the_requested_resolutions():
    def count(model):
        return sum(isinstance(m, AttentionBlock) for m in model.modules())

    # Encoder 1 block at ds=2, middle 1, decoder 2 blocks at ds=2.
    assert count(make(attention_resolutions=(2,))) == 4
    assert count(make(attention_resolutions=(1, 2))) == 1 + 1 + 4 + 1
    assert count(make(attention_resolutions=())) == 1


class TestInputErrors:
    def test_wrong_channel_count(self):
        with pytest.raises(ValueError, match=r"x must have shape \(B, 1, H, W\)"):
            make()(torch.randn(2, 3, 8, 8), torch.rand(2))

    def test_wrong_rank(self):
        with pytest.raises(ValueError, match="x must have shape"):
            make()(torch.randn(2, 64), torch.rand(2))


class TestConstructorErrors:
    @pytest.mark.parametrize(
        ("overrides", "name"),
        [
            (dict(attention_resolutions=(4,)), "attention_resolutions"),
            (dict(channel_mult=()), "channel_mult"),
            (dict(channel_mult=(1, 0)), "channel_mult"),
            (dict(num_res_blocks=0), "num_res_blocks"),
            (dict(model_channels=1), "model_channels"),
            (dict(in_channels=0), "in_channels"),
            (dict(out_channels=0), "out_channels"),
            (dict(dropout=1.0), "dropout"),
            (dict(num_heads=3), "num_heads"),
            (dict(num_head_channels=3), "num_head_channels"),
        ],
    )
    def test_bad_argument_is_named(self, overrides, name):
        with pytest.raises(ValueError, match=name):
            make(**overrides)

    def test_num_head_channels_sets_the_head_count(self):
        model = make(model_channels=16, num_head_channels=8)
        assert {m.num_heads for m in model.modules() if isinstance(m, AttentionBlock)} == {4}


@pytest.mark.parametrize(
    ("channels", "groups"), [(1, 1), (3, 1), (8, 2), (32, 8), (48, 12), (64, 16), (96, 24), (128, 32), (256, 32)]
)
def test_group_count(channels, groups):
    assert group_count(channels) == groups
