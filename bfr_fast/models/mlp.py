"""Residual MLP velocity model for flat vectors (e.g. flattened molecular coordinates)."""

from __future__ import annotations

from torch import Tensor, nn

from bfr_fast.checks import finite_float, integer, positive_int
from bfr_fast.models.embeddings import DEFAULT_TIME_SCALE, ConditionEmbedding
from bfr_fast.models.layers import zero_init


class ResidualMLPBlock(nn.Module):
    """``h + W2 drop(SiLU(W1 AdaLN(h, emb)))`` with ``AdaLN(h, emb) = LN(h) * (1 + s(emb)) + b(emb)``.

    ``W2`` starts at zero, so the block starts as the identity.

    Args:
        hidden: Width of the residual stream.
        embed_dim: Width of the time/class embedding.
        dropout: Dropout probability before ``W2``.
    """

    def __init__(self, hidden: int, embed_dim: int, dropout: float) -> None:
        super().__init__()
        # The affine part of the norm would duplicate the embedding's scale and shift.
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(embed_dim, 2 * hidden))
        self.layers = nn.Sequential(
            nn.Linear(hidden, hidden), nn.SiLU(), nn.Dropout(dropout), zero_init(nn.Linear(hidden, hidden))
        )

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.modulation(emb).chunk(2, dim=-1)
        return h + self.layers(self.norm(h) * (1 + scale) + shift)


class MLP(nn.Module):
    """Residual MLP: ``forward(x, t, y=None) -> (B, dim)`` for flat states ``x`` of shape ``(B, dim)``.

    ``Linear(dim, hidden)``, ``depth`` :class:`ResidualMLPBlock` s conditioned on the time (and class)
    embedding, then ``LayerNorm -> SiLU -> Linear(hidden, dim)`` with the last layer at zero, so an
    untrained model outputs 0.

    Args:
        dim: Size of the flat state.
        hidden: Width of the residual stream.
        depth: Number of residual blocks.
        time_embed_dim: Width of the time (and class) embedding; also its number of sinusoidal features.
        num_classes: Number of classes for a class-conditional model, None for an unconditional one; a
            conditional model has one more, "null" class (:attr:`null_class`) for classifier-free guidance.
        dropout: Dropout probability inside the blocks.
        time_scale: Factor applied to t in [0, 1] before the sinusoidal embedding.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        depth: int = 4,
        time_embed_dim: int = 128,
        num_classes: int | None = None,
        dropout: float = 0.0,
        time_scale: float = DEFAULT_TIME_SCALE,
    ) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("hidden", hidden), ("depth", depth)):
            positive_int(name, value)
        integer("time_embed_dim", time_embed_dim, low=2, why="it is also the number of sinusoidal features")
        finite_float("dropout", dropout, low=0.0, high=1.0, high_open=True)
        self.dim = dim
        self.num_classes = num_classes
        self.embed = ConditionEmbedding(time_embed_dim, time_embed_dim, num_classes, time_scale)
        self.input = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(ResidualMLPBlock(hidden, time_embed_dim, dropout) for _ in range(depth))
        self.output = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), zero_init(nn.Linear(hidden, dim)))

    @property
    def null_class(self) -> int | None:
        """The label meaning "no class" (``num_classes``) for classifier-free guidance; None if unconditional."""
        return self.embed.null_class

    def forward(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """Evaluates the model.

        Args:
            x: ``(B, dim)`` state.
            t: ``(B,)`` float times in [0, 1]; a python number or 0-d tensor is broadcast to all samples.
                Kept in float32 whatever x's dtype.
            y: ``(B,)`` integer labels in ``[0, num_classes]`` (``num_classes`` is the null class) for a
                class-conditional model, None for the null class. Must be None for an unconditional model.

        Returns:
            ``(B, dim)``.

        Raises:
            ValueError: If x is not ``(B, dim)``, t has the wrong length or an integer dtype, or y is given
                to an unconditional model, has the wrong shape, or holds an unknown label.
        """
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        emb = self.embed(t, y, x.shape[0], x.device)
        h = self.input(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.output(h)
