"""Conditioning inputs of the velocity models: time, class labels, and their checks.

Every model in :mod:`bfr_fast.models` turns ``(t, y)`` into one vector per sample with
:class:`ConditionEmbedding`: :class:`TimeEmbedding` of t plus, for class-conditional models,
:class:`LabelEmbedding` of y, whose extra "null" class is the unconditional input of classifier-free
guidance.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bfr_fast.checks import integer, positive_int

#: ADM feeds integer DDPM steps in [0, 1000) to its embedding; scaling t in [0, 1] by the same factor
#: spreads the sinusoid's fastest frequencies over the same range of phases.
DEFAULT_TIME_SCALE = 1000.0


def batch_times(t: Tensor | float, batch_size: int, device: torch.device) -> Tensor:
    """Returns the time of every sample as a ``(batch_size,)`` float32 tensor on ``device``.

    Args:
        t: A ``(batch_size,)`` floating tensor, or one time for the whole batch (a python number or a
            0-d floating tensor), which is broadcast. Times stay float32 whatever the state's dtype: a
            bfloat16 t would round 0.999 to 1.0.
        batch_size: Number of samples B.
        device: Device of the state x.

    Raises:
        ValueError: If ``t`` is an integer tensor (DDPM step indices are not times in [0, 1]) or its length
            is not ``batch_size``.
    """
    if not isinstance(t, Tensor):
        if isinstance(t, bool) or not isinstance(t, (int, float)):
            raise ValueError(f"t must be a (B,) float tensor or a python number, got {type(t).__name__}")
        return torch.full((batch_size,), float(t), dtype=torch.float32, device=device)
    if not t.is_floating_point():
        raise ValueError(f"t must be a floating tensor of times in [0, 1], got dtype {t.dtype}")
    if t.dim() == 0:
        t = t.expand(batch_size)
    elif t.shape != (batch_size,):
        raise ValueError(f"t must have shape ({batch_size},) to match x, or be 0-d; got {tuple(t.shape)}")
    return t.to(device=device, dtype=torch.float32)


def sinusoidal_embedding(
    t: Tensor, dim: int, scale: float = DEFAULT_TIME_SCALE, max_period: float = 10_000.0
) -> Tensor:
    """Transformer-style sinusoidal features of ``scale * t``, computed in float32.

    With ``h = dim // 2`` and frequencies ``w_k = max_period^(-k/h)``, k = 0..h-1::

        emb(t) = [cos(scale t w_0), ..., cos(scale t w_{h-1}), sin(scale t w_0), ..., sin(scale t w_{h-1})]

    padded with one zero column when ``dim`` is odd.

    Args:
        t: ``(B,)`` times.
        dim: Number of features.
        scale: Factor applied to t before the sinusoid (1000 maps t in [0, 1] onto ADM's step range).
        max_period: Period of the slowest frequency, in units of ``scale * t``.

    Returns:
        ``(B, dim)`` float32 features.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    # A bfloat16 t has 3 significant digits; times 1000 the fast frequencies' phases would be noise.
    args = (scale * t.float())[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimeEmbedding(nn.Module):
    """Sinusoidal features of t followed by a two-layer MLP: ``Linear -> SiLU -> Linear``.

    Args:
        frequency_dim: Number of sinusoidal features.
        embed_dim: Width of the MLP and of its output.
        scale: Factor applied to t before the sinusoid (see :func:`sinusoidal_embedding`).
    """

    def __init__(self, frequency_dim: int, embed_dim: int, scale: float = DEFAULT_TIME_SCALE) -> None:
        super().__init__()
        integer("frequency_dim", frequency_dim, low=2)
        self.frequency_dim = frequency_dim
        self.scale = scale
        self.mlp = nn.Sequential(
            nn.Linear(frequency_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim)
        )

    def forward(self, t: Tensor) -> Tensor:
        """Embeds ``(B,)`` times into ``(B, embed_dim)``.

        The sinusoid is computed in float32 and only then cast to the dtype of the MLP's weights (which
        autocast overrides as usual).
        """
        features = sinusoidal_embedding(t, self.frequency_dim, self.scale)
        return self.mlp(features.to(next(self.mlp.parameters()).dtype))


class LabelEmbedding(nn.Module):
    """Learned class embeddings with one extra "null" class for classifier-free guidance.

    Labels are in ``[0, num_classes]``; the label ``num_classes`` (:attr:`null_class`) is the
    unconditional input. Label dropout at training replaces labels by it; ``y=None`` means every sample
    is unconditional.

    Args:
        num_classes: Number of real classes C.
        embed_dim: Embedding width.
    """

    def __init__(self, num_classes: int, embed_dim: int) -> None:
        super().__init__()
        positive_int("num_classes", num_classes)
        self.num_classes = num_classes
        self.embedding = nn.Embedding(num_classes + 1, embed_dim)

    @property
    def null_class(self) -> int:
        """The label of the unconditional input, ``num_classes``."""
        return self.num_classes

    def forward(self, y: Tensor | None, batch_size: int, device: torch.device) -> Tensor:
        """Embeds labels into ``(batch_size, embed_dim)``.

        Args:
            y: ``(batch_size,)`` integer labels in ``[0, num_classes]``, or None for the null class.
            batch_size: Number of samples B.
            device: Device of the state x.

        Raises:
            ValueError: If ``y`` is not an integer tensor of shape ``(batch_size,)`` or, on the CPU in eager
                mode, holds a label outside ``[0, num_classes]``. On an accelerator (and under
                ``torch.compile``) the range is checked by an asynchronous assert instead (a RuntimeError,
                fatal to a CUDA context), so a sampling loop never waits on the host.
        """
        if y is None:
            y = torch.full((batch_size,), self.null_class, dtype=torch.long, device=device)
        elif not isinstance(y, Tensor) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(f"y must be an integer tensor of class labels, got {_describe(y)}")
        elif y.shape != (batch_size,):
            raise ValueError(f"y must have shape ({batch_size},) to match x, got {tuple(y.shape)}")
        else:
            y = y.to(device=device, dtype=torch.long)
            out_of_range = (y < 0) | (y > self.null_class)
            if y.device.type == "cpu" and not torch.compiler.is_compiling():
                if bool(out_of_range.any()):
                    bad = y[out_of_range][0].item()
                    raise ValueError(
                        f"y must hold labels in [0, {self.null_class}] ({self.null_class} is the null "
                        f"class), got {bad}"
                    )
            else:
                torch._assert_async(~out_of_range.any(), f"y must hold labels in [0, {self.null_class}]")
        return self.embedding(y)


class ConditionEmbedding(nn.Module):
    """The per-sample conditioning vector of a model: ``TimeEmbedding(t) [+ LabelEmbedding(y)]``.

    Args:
        frequency_dim: Number of sinusoidal features of t.
        embed_dim: Width of the embedding.
        num_classes: Number of classes of a class-conditional model, None for an unconditional one.
        time_scale: Factor applied to t before the sinusoid (see :func:`sinusoidal_embedding`).
    """

    def __init__(
        self,
        frequency_dim: int,
        embed_dim: int,
        num_classes: int | None = None,
        time_scale: float = DEFAULT_TIME_SCALE,
    ) -> None:
        super().__init__()
        self.time = TimeEmbedding(frequency_dim, embed_dim, scale=time_scale)
        self.label = None if num_classes is None else LabelEmbedding(num_classes, embed_dim)

    @property
    def null_class(self) -> int | None:
        """The label meaning "no class" (``num_classes``); None for an unconditional model."""
        return None if self.label is None else self.label.null_class

    def forward(self, t: Tensor | float, y: Tensor | None, batch_size: int, device: torch.device) -> Tensor:
        """Embeds times and labels into ``(batch_size, embed_dim)``.

        Args:
            t: Times, as accepted by :func:`batch_times`.
            y: Labels, as accepted by :meth:`LabelEmbedding.forward`; must be None when unconditional.
            batch_size: Number of samples B.
            device: Device of the state x.

        Raises:
            ValueError: For a bad t or y (see :func:`batch_times`, :meth:`LabelEmbedding.forward`), or a y
                given to an unconditional model.
        """
        emb = self.time(batch_times(t, batch_size, device))
        if self.label is not None:
            return emb + self.label(y, batch_size, device)
        if y is not None:
            raise ValueError("y must be None: this model is unconditional (num_classes=None)")
        return emb


def _describe(value: object) -> str:
    return f"dtype {value.dtype}" if isinstance(value, Tensor) else type(value).__name__
