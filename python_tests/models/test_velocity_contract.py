"""The velocity-model contract every architecture keeps: ``forward(x, t, y=None) -> (B, *x.shape[1:])``.

What the solvers, losses and refiners rely on, checked once for each of UNet, SiT and MLP: output shape and zero
initial output, time and labels reach the output, the null class is "no label" (classifier-free guidance and label
dropout train it), samples in a batch do not interact, t as a scalar broadcasts and stays float32 under bfloat16,
every parameter is trained, and a seed fixes the model. The architecture-specific tests stay in their own files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import nn

from bfr_fast.models import MLP, SiT, UNet

NUM_CLASSES = 3


@dataclass(frozen=True)
class Architecture:
    """A small configuration of one architecture and the shape of one sample it takes."""

    build: Callable[..., nn.Module]
    config: dict[str, Any]
    sample_shape: tuple[int, ...]
    # A larger configuration for the bfloat16 comparison, where the tiny one is dominated by rounding.
    bf16_config: dict[str, Any] = field(default_factory=dict)
    bf16_sample_shape: tuple[int, ...] | None = None
    has_out_channels: bool = True

    def make(self, seed: int = 0, **overrides: Any) -> nn.Module:
        torch.manual_seed(seed)
        return self.build(**{**self.config, **overrides})

    def x(self, batch: int, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        return torch.randn(batch, *(shape or self.sample_shape))


ARCHITECTURES = {
    "unet": Architecture(
        UNet,
        dict(in_channels=1, model_channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(2,)),
        (1, 8, 8),
        bf16_config=dict(channel_mult=(1, 2, 2)),
        bf16_sample_shape=(1, 28, 28),
    ),
    "sit": Architecture(
        SiT,
        dict(image_size=8, in_channels=1, patch_size=2, hidden_size=32, depth=2, num_heads=4, frequency_dim=16),
        (1, 8, 8),
        bf16_config=dict(image_size=28, patch_size=4),
        bf16_sample_shape=(1, 28, 28),
    ),
    "mlp": Architecture(MLP, dict(dim=12, hidden=32, depth=2, time_embed_dim=16), (12,), has_out_channels=False),
}


@pytest.fixture(params=sorted(ARCHITECTURES))
def arch(request) -> Architecture:
    return ARCHITECTURES[request.param]


def test_output_has_the_input_shape_and_starts_at_zero(arch):
    model = arch.make(num_classes=NUM_CLASSES)
    x = arch.x(4)
    out = model(x, torch.rand(4), torch.tensor([0, 1, 2, NUM_CLASSES]))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.all(out == 0)  # zero-initialised output layer: an untrained model is the zero field


@pytest.mark.parametrize("name", [n for n, a in sorted(ARCHITECTURES.items()) if a.has_out_channels])
def test_out_channels(name):
    arch = ARCHITECTURES[name]
    out = arch.make(out_channels=2)(arch.x(2), torch.rand(2))
    assert out.shape == (2, 2, *arch.sample_shape[1:])


def test_time_changes_the_output(arch, perturb_zero_parameters):
    model = perturb_zero_parameters(arch.make())
    x = arch.x(1)
    assert not torch.allclose(model(x, 0.2), model(x, 0.8))


class TestClassConditioning:
    def test_labels_change_the_output(self, arch, perturb_zero_parameters):
        model = perturb_zero_parameters(arch.make(num_classes=NUM_CLASSES))
        x = arch.x(1).expand(NUM_CLASSES + 1, *arch.sample_shape)
        out = model(x, torch.full((NUM_CLASSES + 1,), 0.5), torch.arange(NUM_CLASSES + 1))
        for a in range(NUM_CLASSES + 1):  # every class, and the null class, is its own condition
            for b in range(a + 1, NUM_CLASSES + 1):
                assert not torch.allclose(out[a], out[b])

    def test_null_class_equals_no_labels(self, arch, perturb_zero_parameters):
        # Label dropout trains the null class; y=None at sampling must mean the same unconditional field.
        model = perturb_zero_parameters(arch.make(num_classes=NUM_CLASSES))
        assert model.null_class == NUM_CLASSES
        x, t = arch.x(2), torch.rand(2)
        torch.testing.assert_close(model(x, t), model(x, t, torch.full((2,), model.null_class)))

    def test_unconditional_has_no_null_class(self, arch):
        assert arch.make().null_class is None


def test_samples_are_independent(arch, perturb_zero_parameters):
    model = perturb_zero_parameters(arch.make(num_classes=NUM_CLASSES, dropout=0.5)).eval()
    x, t, y = arch.x(2), torch.tensor([0.3, 0.9]), torch.tensor([1, 2])
    pair = model(x, t, y)
    torch.testing.assert_close(pair[:1], model(x[:1], t[:1], y[:1]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pair[1:], model(x[1:], t[1:], y[1:]), atol=1e-5, rtol=1e-5)

    x.requires_grad_(True)
    model(x, t, y)[0].sum().backward()
    assert torch.all(x.grad[1] == 0)
    assert x.grad[0].abs().sum() > 0


@pytest.mark.parametrize("num_classes", [None, NUM_CLASSES])
def test_gradients_reach_every_parameter(arch, grads_after_training_steps, num_classes):
    # Zero-initialised layers in series (output layer, adaLN-Zero gates) need a step each before the gradient
    # reaches the layers behind them: three steps cover every architecture here.
    model = arch.make(num_classes=num_classes, dropout=0.1)

    def inputs():
        y = None if num_classes is None else torch.randint(0, num_classes + 1, (8,))
        return arch.x(8), torch.rand(8), y

    grads = grads_after_training_steps(model, inputs, steps=3)
    assert [name for name, g in grads.items() if g is None or not g.any()] == []


def test_a_seed_fixes_the_model_and_eval_is_deterministic(arch, perturb_zero_parameters):
    a = perturb_zero_parameters(arch.make(seed=3, num_classes=NUM_CLASSES, dropout=0.5)).eval()
    b = perturb_zero_parameters(arch.make(seed=3, num_classes=NUM_CLASSES, dropout=0.5)).eval()
    x, t, y = arch.x(3), torch.rand(3), torch.tensor([0, 2, NUM_CLASSES])
    assert torch.equal(a(x, t, y), b(x, t, y))
    assert torch.equal(a(x, t, y), a(x, t, y))
    other = perturb_zero_parameters(arch.make(seed=4, num_classes=NUM_CLASSES, dropout=0.5)).eval()
    assert not torch.equal(a(x, t, y), other(x, t, y))


class TestTime:
    def test_scalar_t_is_broadcast(self, arch, perturb_zero_parameters):
        model = perturb_zero_parameters(arch.make())
        x = arch.x(2)
        expected = model(x, torch.full((2,), 0.5))
        torch.testing.assert_close(model(x, 0.5), expected)
        torch.testing.assert_close(model(x, torch.tensor(0.5)), expected)

    def test_wrong_t_length(self, arch):
        with pytest.raises(ValueError, match=r"t must have shape \(2,\)"):
            arch.make()(arch.x(2), torch.rand(3))

    def test_integer_t(self, arch):
        # DDPM step indices are not times in [0, 1]
        with pytest.raises(ValueError, match="t must be a floating tensor"):
            arch.make()(arch.x(2), torch.tensor([10, 500]))


class TestLabelErrors:
    def test_labels_for_an_unconditional_model(self, arch):
        with pytest.raises(ValueError, match="y must be None"):
            arch.make()(arch.x(2), torch.rand(2), torch.tensor([0, 1]))

    @pytest.mark.parametrize("bad", [-1, NUM_CLASSES + 1])
    def test_label_out_of_range(self, arch, bad):
        with pytest.raises(ValueError, match=rf"y must hold labels in \[0, {NUM_CLASSES}\]"):
            arch.make(num_classes=NUM_CLASSES)(arch.x(2), torch.rand(2), torch.tensor([0, bad]))

    def test_float_labels(self, arch):
        with pytest.raises(ValueError, match="y must be an integer tensor"):
            arch.make(num_classes=NUM_CLASSES)(arch.x(2), torch.rand(2), torch.tensor([0.0, 1.0]))


class TestBfloat16:
    def test_autocast_matches_float32(self, arch, perturb_zero_parameters):
        model = perturb_zero_parameters(arch.make(num_classes=NUM_CLASSES, **arch.bf16_config), std=0.05)
        x, t, y = arch.x(2, arch.bf16_sample_shape), torch.rand(2), torch.tensor([0, NUM_CLASSES])
        reference = model(x, t, y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x, t, y)
        assert out.dtype == torch.bfloat16
        assert (out.float() - reference).norm() / reference.norm() < 0.05

    def test_time_is_not_rounded_to_bfloat16(self, arch, perturb_zero_parameters):
        # In bfloat16, 0.999 rounds to 1.0; the model must still tell the two apart.
        model = perturb_zero_parameters(arch.make())
        x = arch.x(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not torch.equal(model(x, torch.tensor([0.999])), model(x, torch.tensor([1.0])))
        model, x = model.to(torch.bfloat16), x.to(torch.bfloat16)
        out = model(x, torch.tensor([0.999]))
        assert out.dtype == torch.bfloat16
        assert not torch.equal(out, model(x, torch.tensor([1.0])))
