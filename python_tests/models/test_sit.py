"""SiT-specific tests; the velocity-model contract shared with UNet and MLP is in test_velocity_contract.py."""

import math

import pytest
import torch

from bfr_fast.models import SIT_PRESETS, SiT, position_embedding_2d
from bfr_fast.models.sit import SiTBlock

# Small widths keep the file fast; the structure (patches, grids, modulation) is what is tested.
TINY = dict(image_size=8, in_channels=1, patch_size=2, hidden_size=32, depth=2, num_heads=4, frequency_dim=16)


def make(seed: int = 0, **overrides) -> SiT:
    torch.manual_seed(seed)
    return SiT(**{**TINY, **overrides})


@pytest.mark.parametrize(
    ("size", "overrides"),
    [
        ((8, 8), {}),
        ((28, 28), dict(image_size=28, patch_size=4)),  # 7x7 tokens
        ((32, 32), dict(image_size=32, in_channels=3, patch_size=4)),
        ((12, 20), dict(image_size=(12, 20), patch_size=4)),  # 3x5 tokens
        ((6, 4), dict(image_size=(6, 4), patch_size=1)),  # one token per pixel
    ],
)
def test_output_shape(perturb_zero_parameters, size, overrides):
    model = perturb_zero_parameters(make(**overrides, num_classes=10))
    x = torch.randn(3, model.in_channels, *size)
    out = model(x, torch.rand(3), torch.tensor([0, 5, 10]))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_unpatchify_inverts_patchify():
    # A token's values, ordered (patch row, patch column, channel), land on its own patch of pixels.
    model = make(image_size=(4, 6), in_channels=2, patch_size=2)
    x = torch.randn(3, 2, 4, 6)
    tokens = x.unfold(2, 2, 2).unfold(3, 2, 2)  # (B, C, gh, gw, p, p)
    tokens = tokens.permute(0, 2, 3, 4, 5, 1).reshape(3, 6, 8)
    torch.testing.assert_close(model.unpatchify(tokens), x, rtol=0, atol=0)


def test_each_output_patch_is_computed_from_its_token(perturb_zero_parameters):
    # With no blocks, the output patch at (i, j) depends on the input patch at (i, j) only.
    model = perturb_zero_parameters(make(depth=1, image_size=(4, 6)))
    model.blocks = torch.nn.ModuleList()
    x = torch.randn(1, 1, 4, 6, requires_grad=True)
    model(x, 0.5)[0, 0, 0, 2].backward()  # pixel in patch (0, 1)
    touched = x.grad[0, 0] != 0
    expected = torch.zeros(4, 6, dtype=torch.bool)
    expected[0:2, 2:4] = True
    assert torch.equal(touched, expected)


def test_blocks_start_as_the_identity():
    model = make(num_classes=3)
    h, c = torch.randn(2, 16, 32), torch.randn(2, 32)
    for block in model.blocks:
        assert torch.equal(block(h, c), h)


def test_block_applies_adaln_zero_modulation():
    # A constant modulation (weights 0, bias b) makes (shift1, scale1, gate1, shift2, scale2, gate2) = b.
    torch.manual_seed(0)
    block = SiTBlock(16, 2, 4.0, 0.0)
    linear = block.modulation[-1]
    with torch.no_grad():
        linear.bias.normal_()
    shift1, scale1, gate1, shift2, scale2, gate2 = linear.bias.detach().chunk(6)
    h, c = torch.randn(2, 5, 16), torch.randn(2, 16)

    def norm(v):
        return torch.nn.functional.layer_norm(v, (16,), eps=1e-6)

    expected = h + gate1 * block.attention(norm(h) * (1 + scale1) + shift1)
    expected = expected + gate2 * block.mlp(norm(expected) * (1 + scale2) + shift2)
    torch.testing.assert_close(block(h, c), expected)


class TestPositionEmbedding:
    def test_matches_formula(self):
        dim, (height, width) = 8, (3, 5)
        pos = position_embedding_2d(dim, (height, width))
        assert pos.shape == (height * width, dim) and pos.dtype == torch.float32

        def part(p):  # 4 features: 2 frequencies, 10000^0 and 10000^(-1/2)
            return [math.cos(p), math.cos(p / 100), math.sin(p), math.sin(p / 100)]

        expected = torch.tensor([part(i) + part(j) for i in range(height) for j in range(width)])
        torch.testing.assert_close(pos, expected, atol=1e-6, rtol=0)

    def test_odd_dim_splits_rows_and_columns(self):
        pos = position_embedding_2d(7, (2, 3))
        assert pos.shape == (6, 7)
        torch.testing.assert_close(pos[:, :3], position_embedding_2d(6, (2, 3))[:, :3])  # rows: 3 features

    @pytest.mark.parametrize("grid", [(7, 7), (3, 5), (5, 3), (1, 4), (16, 16)])
    def test_positions_are_distinct(self, grid):
        pos = position_embedding_2d(32, grid)
        distances = torch.cdist(pos, pos)
        off_diagonal = distances[~torch.eye(len(pos), dtype=torch.bool)]
        assert off_diagonal.min() > 0.1

    def test_is_a_fixed_buffer_outside_the_state_dict(self):
        model = make(image_size=(12, 20), patch_size=4)
        torch.testing.assert_close(model.pos_embed, position_embedding_2d(32, (3, 5)))
        assert "pos_embed" not in model.state_dict()
        assert all(p is not model.pos_embed for p in model.parameters())


@pytest.mark.parametrize(("name", "size"), [("digits", 8), ("mnist", 28)])
def test_presets(name, size):
    model = SiT.from_preset(name, in_channels=1, num_classes=10)
    assert model.image_size == (size, size)
    assert model.patch_size == SIT_PRESETS[name]["patch_size"]
    assert model(torch.randn(2, 1, size, size), torch.rand(2)).shape == (2, 1, size, size)


def test_preset_overrides_and_unknown_name():
    assert SiT.from_preset("digits", in_channels=3, depth=1).in_channels == 3
    assert len(SiT.from_preset("digits", in_channels=1, depth=1).blocks) == 1
    with pytest.raises(ValueError, match="name must be one of"):
        SiT.from_preset("cifar", in_channels=3)


class TestInputErrors:
    def test_wrong_channel_count(self):
        with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 8, 8\)"):
            make()(torch.randn(2, 3, 8, 8), torch.rand(2))

    def test_wrong_image_size(self):
        with pytest.raises(ValueError, match=r"x must have shape \(B, 1, 8, 8\)"):
            make()(torch.randn(2, 1, 16, 16), torch.rand(2))

    def test_wrong_rank(self):
        with pytest.raises(ValueError, match="x must have shape"):
            make()(torch.randn(2, 64), torch.rand(2))


class TestConstructorErrors:
    @pytest.mark.parametrize(
        ("overrides", "match"),
        [
            (dict(image_size=28, patch_size=3), r"image_size \(28, 28\) must be a multiple of patch_size=3"),
            (dict(image_size=(12, 10), patch_size=4), r"image_size \(12, 10\) must be a multiple of patch_size=4"),
            (dict(image_size=0), "image_size"),
            (dict(image_size=(8, 8, 8)), "image_size"),
            (dict(image_size=8.0), "image_size"),
            (dict(in_channels=0), "in_channels"),
            (dict(out_channels=0), "out_channels"),
            (dict(patch_size=0), "patch_size"),
            (dict(hidden_size=0), "hidden_size"),
            (dict(depth=0), "depth"),
            (dict(num_heads=0), "num_heads"),
            (dict(num_heads=3), r"num_heads=3 must divide hidden_size=32"),
            (dict(mlp_ratio=0.0), "mlp_ratio"),
            (dict(dropout=1.0), "dropout"),
            (dict(frequency_dim=1), "frequency_dim"),
        ],
    )
    def test_bad_argument_is_named(self, overrides, match):
        with pytest.raises(ValueError, match=match):
            make(**overrides)
