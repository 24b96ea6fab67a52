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


def test_out_channels():
    model = make(out_channels=2)
    assert model(torch.randn(2, 1, 8, 8), torch.rand(2)).shape == (2, 2, 8, 8)


def test_untrained_output_is_zero():
    out = make(num_classes=3)(torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([0, 3]))
    assert torch.all(out == 0)


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


def test_time_changes_the_output(perturb_zero_parameters):
    model = perturb_zero_parameters(make())
    x = torch.randn(1, 1, 8, 8)
    assert not torch.allclose(model(x, 0.2), model(x, 0.8))


class TestClassConditioning:
    def test_labels_change_the_output(self, perturb_zero_parameters):
        model = perturb_zero_parameters(make(num_classes=3))
        x = torch.randn(1, 1, 8, 8).expand(4, -1, -1, -1)
        out = model(x, torch.full((4,), 0.5), torch.tensor([0, 1, 2, 3]))
        for a in range(4):
            for b in range(a + 1, 4):
                assert not torch.allclose(out[a], out[b])

    def test_null_class_equals_no_labels(self, perturb_zero_parameters):
        model = perturb_zero_parameters(make(num_classes=3))
        assert model.null_class == 3
        x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
        torch.testing.assert_close(model(x, t), model(x, t, torch.full((2,), model.null_class)))

    def test_unconditional_has_no_null_class(self):
        assert make().null_class is None


def test_samples_are_independent(perturb_zero_parameters):
    model = perturb_zero_parameters(make(num_classes=3, dropout=0.5)).eval()
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([0.3, 0.9]), torch.tensor([1, 2])
    pair = model(x, t, y)
    torch.testing.assert_close(pair[:1], model(x[:1], t[:1], y[:1]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pair[1:], model(x[1:], t[1:], y[1:]), atol=1e-5, rtol=1e-5)

    x.requires_grad_(True)
    model(x, t, y)[0].sum().backward()
    assert torch.all(x.grad[1] == 0)
    assert x.grad[0].abs().sum() > 0


@pytest.mark.parametrize("num_classes", [None, 4])
def test_gradients_reach_every_parameter_after_two_steps(grads_after_training_steps, num_classes):
    # adaLN-Zero: step 1 moves only the output layer, step 2 the gates, then everything gets a gradient.
    model = make(num_classes=num_classes, dropout=0.1)

    def inputs():
        y = None if num_classes is None else torch.randint(0, num_classes + 1, (4,))
        return torch.randn(4, 1, 8, 8), torch.rand(4), y

    grads = grads_after_training_steps(model, inputs, steps=3)
    dead = [name for name, g in grads.items() if g is None or not g.any()]
    assert dead == []


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


class TestBfloat16:
    def test_autocast_matches_float32(self, perturb_zero_parameters):
        model = perturb_zero_parameters(make(num_classes=3, image_size=28, patch_size=4), std=0.05)
        x, t, y = torch.randn(2, 1, 28, 28), torch.rand(2), torch.tensor([0, 3])
        reference = model(x, t, y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x, t, y)
        assert out.dtype == torch.bfloat16
        error = (out.float() - reference).norm() / reference.norm()
        assert error < 0.05

    def test_time_is_not_rounded_to_bfloat16(self, perturb_zero_parameters):
        # In bfloat16, 0.999 rounds to 1.0; the model must still tell the two apart.
        model = perturb_zero_parameters(make())
        x = torch.randn(1, 1, 8, 8)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not torch.equal(model(x, torch.tensor([0.999])), model(x, torch.tensor([1.0])))
        model, x = model.to(torch.bfloat16), x.to(torch.bfloat16)
        out = model(x, torch.tensor([0.999]))
        assert out.dtype == torch.bfloat16
        assert not torch.equal(out, model(x, torch.tensor([1.0])))


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

    def test_wrong_t_length(self):
        with pytest.raises(ValueError, match=r"t must have shape \(2,\)"):
            make()(torch.randn(2, 1, 8, 8), torch.rand(3))

    def test_integer_t(self):
        with pytest.raises(ValueError, match="t must be a floating tensor"):
            make()(torch.randn(2, 1, 8, 8), torch.tensor([10, 500]))

    def test_scalar_t_is_broadcast(self, perturb_zero_parameters):
        model = perturb_zero_parameters(make())
        x = torch.randn(2, 1, 8, 8)
        expected = model(x, torch.full((2,), 0.5))
        torch.testing.assert_close(model(x, 0.5), expected)
        torch.testing.assert_close(model(x, torch.tensor(0.5)), expected)

    def test_labels_for_an_unconditional_model(self):
        with pytest.raises(ValueError, match="y must be None"):
            make()(torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([0, 1]))

    @pytest.mark.parametrize("bad", [-1, 4])
    def test_label_out_of_range(self, bad):
        with pytest.raises(ValueError, match=r"y must hold labels in \[0, 3\]"):
            make(num_classes=3)(torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([0, bad]))

    def test_float_labels(self):
        with pytest.raises(ValueError, match="y must be an integer tensor"):
            make(num_classes=3)(torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([0.0, 1.0]))


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
