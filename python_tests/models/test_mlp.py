import pytest
import torch

from bfr_fast.models import MLP

DIM = 12


def make(seed: int = 0, **overrides) -> MLP:
    torch.manual_seed(seed)
    return MLP(**{"dim": DIM, "hidden": 32, "depth": 2, "time_embed_dim": 16, **overrides})


def test_output_shape_and_zero_init():
    model = make(num_classes=3)
    x = torch.randn(5, DIM)
    out = model(x, torch.rand(5), torch.tensor([0, 1, 2, 3, 0]))
    assert out.shape == (5, DIM)
    assert torch.all(out == 0)


def test_time_changes_the_output(perturb_zero_parameters):
    model = perturb_zero_parameters(make())
    x = torch.randn(1, DIM)
    assert not torch.allclose(model(x, 0.2), model(x, 0.8))


class TestClassConditioning:
    def test_labels_change_the_output(self, perturb_zero_parameters):
        model = perturb_zero_parameters(make(num_classes=3))
        x = torch.randn(1, DIM).expand(3, -1)
        out = model(x, torch.full((3,), 0.5), torch.tensor([0, 1, 2]))
        assert not torch.allclose(out[0], out[1])
        assert not torch.allclose(out[1], out[2])

    def test_null_class_equals_no_labels(self, perturb_zero_parameters):
        model = perturb_zero_parameters(make(num_classes=3))
        assert model.null_class == 3
        x, t = torch.randn(2, DIM), torch.rand(2)
        torch.testing.assert_close(model(x, t), model(x, t, torch.full((2,), 3)))

    def test_unconditional_has_no_null_class(self):
        assert make().null_class is None


def test_samples_are_independent(perturb_zero_parameters):
    model = perturb_zero_parameters(make(num_classes=3, dropout=0.5)).eval()
    x, t, y = torch.randn(2, DIM), torch.tensor([0.3, 0.9]), torch.tensor([1, 2])
    pair = model(x, t, y)
    torch.testing.assert_close(pair[:1], model(x[:1], t[:1], y[:1]), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(pair[1:], model(x[1:], t[1:], y[1:]), atol=1e-6, rtol=1e-5)

    x.requires_grad_(True)
    model(x, t, y)[0].sum().backward()
    assert torch.all(x.grad[1] == 0)
    assert x.grad[0].abs().sum() > 0


@pytest.mark.parametrize("num_classes", [None, 4])
def test_gradients_reach_every_parameter(grads_after_training_steps, num_classes):
    model = make(num_classes=num_classes, dropout=0.1)

    def inputs():
        y = None if num_classes is None else torch.randint(0, num_classes + 1, (8,))
        return torch.randn(8, DIM), torch.rand(8), y

    grads = grads_after_training_steps(model, inputs)
    assert [name for name, g in grads.items() if g is None or not g.any()] == []


def test_bfloat16_autocast_matches_float32(perturb_zero_parameters):
    model = perturb_zero_parameters(make(num_classes=3))
    x, t, y = torch.randn(4, DIM), torch.rand(4), torch.tensor([0, 1, 2, 3])
    reference = model(x, t, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, t, y)
        assert not torch.equal(model(x[:1], 0.999), model(x[:1], 1.0))
    assert out.dtype == torch.bfloat16
    assert (out.float() - reference).norm() / reference.norm() < 0.05


def test_bfloat16_model():
    model = make().to(torch.bfloat16)
    assert model(torch.randn(2, DIM, dtype=torch.bfloat16), torch.rand(2)).dtype == torch.bfloat16


class TestInputErrors:
    @pytest.mark.parametrize("shape", [(2, DIM + 1), (2, 3, 4), (DIM,)])
    def test_wrong_shape(self, shape):
        with pytest.raises(ValueError, match=rf"x must have shape \(B, {DIM}\)"):
            make()(torch.randn(shape), 0.5)

    def test_wrong_t_length(self):
        with pytest.raises(ValueError, match=r"t must have shape \(2,\)"):
            make()(torch.randn(2, DIM), torch.rand(1))

    def test_labels_for_an_unconditional_model(self):
        with pytest.raises(ValueError, match="y must be None"):
            make()(torch.randn(2, DIM), torch.rand(2), torch.tensor([0, 1]))

    def test_label_out_of_range(self):
        with pytest.raises(ValueError, match=r"y must hold labels in \[0, 3\]"):
            make(num_classes=3)(torch.randn(2, DIM), torch.rand(2), torch.tensor([4, 0]))

    @pytest.mark.parametrize(
        ("overrides", "name"),
        [(dict(dim=0), "dim"), (dict(hidden=0), "hidden"), (dict(depth=0), "depth"), (dict(dropout=-0.1), "dropout"),
         (dict(time_embed_dim=1), "time_embed_dim")],
    )
    def test_bad_constructor_argument_is_named(self, overrides, name):
        with pytest.raises(ValueError, match=name):
            make(**overrides)
