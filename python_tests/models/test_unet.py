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


def test_out_channels():
    model = make(out_channels=2)
    assert model(torch.randn(2, 1, 8, 8), torch.rand(2)).shape == (2, 2, 8, 8)


def test_untrained_output_is_zero():
    out = make()(torch.randn(2, 1, 8, 8), torch.rand(2))
    assert torch.all(out == 0)


def test_time_changes_the_output(perturb_zero_parameters):
    model = perturb_zero_parameters(make())
    x = torch.randn(1, 1, 8, 8)
    assert not torch.allclose(model(x, 0.2), model(x, 0.8))


def test_attention_is_placed_at_the_requested_resolutions():
    def count(model):
        return sum(isinstance(m, AttentionBlock) for m in model.modules())

    # Encoder 1 block at ds=2, middle 1, decoder 2 blocks at ds=2.
    assert count(make(attention_resolutions=(2,))) == 4
    assert count(make(attention_resolutions=(1, 2))) == 1 + 1 + 4 + 1
    assert count(make(attention_resolutions=())) == 1


class TestClassConditioning:
    def test_labels_change_the_output(self, perturb_zero_parameters):
        model = perturb_zero_parameters(make(num_classes=3))
        x = torch.randn(1, 1, 8, 8).expand(3, -1, -1, -1)
        out = model(x, torch.full((3,), 0.5), torch.tensor([0, 1, 2]))
        assert not torch.allclose(out[0], out[1])
        assert not torch.allclose(out[1], out[2])

    def test_null_class_equals_no_labels(self, perturb_zero_parameters):
        model = perturb_zero_parameters(make(num_classes=3))
        assert model.null_class == 3
        x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
        torch.testing.assert_close(model(x, t), model(x, t, torch.full((2,), model.null_class)))

    def test_unconditional_has_no_null_class(self):
        assert make().null_class is None


def test_samples_are_independent(perturb_zero_parameters):
    model = perturb_zero_parameters(make(num_classes=3)).eval()
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([0.3, 0.9]), torch.tensor([1, 2])
    pair = model(x, t, y)
    torch.testing.assert_close(pair[:1], model(x[:1], t[:1], y[:1]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pair[1:], model(x[1:], t[1:], y[1:]), atol=1e-5, rtol=1e-5)

    x.requires_grad_(True)
    model(x, t, y)[0].sum().backward()
    assert torch.all(x.grad[1] == 0)
    assert x.grad[0].abs().sum() > 0


@pytest.mark.parametrize("num_classes", [None, 4])
def test_gradients_reach_every_parameter(grads_after_training_steps, num_classes):
    model = make(num_classes=num_classes, dropout=0.1)

    def inputs():
        y = None if num_classes is None else torch.randint(0, num_classes + 1, (4,))
        return torch.randn(4, 1, 8, 8), torch.rand(4), y

    grads = grads_after_training_steps(model, inputs)
    dead = [name for name, g in grads.items() if g is None or not g.any()]
    assert dead == []


class TestBfloat16Autocast:
    def test_forward_matches_float32(self, perturb_zero_parameters):
        model = perturb_zero_parameters(make(num_classes=3, channel_mult=(1, 2, 2)), std=0.05)
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
        with pytest.raises(ValueError, match=r"x must have shape \(B, 1, H, W\)"):
            make()(torch.randn(2, 3, 8, 8), torch.rand(2))

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
