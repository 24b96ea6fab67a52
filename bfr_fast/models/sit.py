r"""SiT/DiT transformer backbone (Peebles & Xie, 2023; Ma et al., 2024) for small images.

The image is cut into non-overlapping ``p x p`` patches, each linearly embedded into one token; a fixed 2-D
sin-cos position embedding is added; ``depth`` transformer blocks run on the tokens, each modulated by the
conditioning vector ``c = TimeEmbedding(t) [+ LabelEmbedding(y)]`` through adaLN-Zero; a final adaLN layer
maps every token back to its ``p x p`` patch of output pixels.

adaLN-Zero: with ``(β₁, γ₁, α₁, β₂, γ₂, α₂) = W SiLU(c) + b`` per block (W, b zero at init)::

    h ← h + α₁ · Attn(LN(h) (1 + γ₁) + β₁)
    h ← h + α₂ · MLP(LN(h) (1 + γ₂) + β₂)

so every block starts as the identity; the final linear layer also starts at zero, so an untrained model
outputs 0 (as the UNet and MLP do). Both image sides must be multiples of the patch size: a padded border
would add tokens that see no data and change the model's receptive field with the padding, so it is
refused with an error naming the sizes instead.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bfr_fast.checks import choice, finite_float, positive_int
from bfr_fast.models.embeddings import DEFAULT_TIME_SCALE, ConditionEmbedding, sinusoidal_embedding
from bfr_fast.models.layers import zero_init

#: Named configurations small enough to train on a CPU. ``digits``: 8x8 images in 2x2 patches (16 tokens);
#: ``mnist``: 28x28 images in 4x4 patches (49 tokens). Use with :meth:`SiT.from_preset`.
SIT_PRESETS: dict[str, dict[str, Any]] = {
    "digits": dict(image_size=8, patch_size=2, hidden_size=96, depth=4, num_heads=4),
    "mnist": dict(image_size=28, patch_size=4, hidden_size=128, depth=4, num_heads=4),
}


def position_embedding_2d(dim: int, grid_size: tuple[int, int]) -> Tensor:
    r"""Fixed sin-cos position embedding of an ``H x W`` grid of tokens, in row-major token order.

    The first ``dim // 2`` features encode the row i, the other ``dim - dim // 2`` the column j, each with
    :func:`~bfr_fast.models.embeddings.sinusoidal_embedding` at unit scale: for a part of width ``d`` with
    ``h = d // 2`` frequencies ``w_k = 10000^{-k/h}``::

        e_d(p) = [cos(p w_0), ..., cos(p w_{h-1}), sin(p w_0), ..., sin(p w_{h-1})]   (+ a 0 if d is odd)
        pos[i W + j] = [e_{dim//2}(i), e_{dim - dim//2}(j)]

    Rows and columns are encoded separately, so non-square grids need nothing special.

    Args:
        dim: Token width.
        grid_size: ``(H, W)`` tokens per column and per row.

    Returns:
        ``(H * W, dim)`` float32 embedding.
    """
    for name, value in (("dim", dim), ("grid_height", grid_size[0]), ("grid_width", grid_size[1])):
        positive_int(name, value)
    rows, cols = torch.meshgrid(
        torch.arange(grid_size[0], dtype=torch.float32), torch.arange(grid_size[1], dtype=torch.float32), indexing="ij"
    )
    return torch.cat(
        [
            sinusoidal_embedding(rows.flatten(), dim // 2, scale=1.0),
            sinusoidal_embedding(cols.flatten(), dim - dim // 2, scale=1.0),
        ],
        dim=1,
    )


def modulate(h: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """``h (1 + scale) + shift``: the adaptive affine part of adaLN, scale and shift broadcast over tokens."""
    return h * (1 + scale) + shift


class SelfAttention(nn.Module):
    """Multi-head self-attention over the tokens of each sample (``F.scaled_dot_product_attention``).

    Args:
        dim: Token width.
        num_heads: Number of heads; must divide ``dim``.
        dropout: Dropout probability on the output projection.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor) -> Tensor:
        b, n, d = h.shape
        q, k, v = self.qkv(h).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        return self.dropout(self.proj(out))


class SiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning (see the module docstring).

    Args:
        hidden_size: Token width (also the width of the conditioning vector).
        num_heads: Attention heads.
        mlp_ratio: Width of the MLP's hidden layer relative to ``hidden_size``.
        dropout: Dropout probability in the MLP and on the attention output.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        # The norms' own affine parameters would duplicate the modulation's scale and shift.
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attention = SelfAttention(hidden_size, num_heads, dropout)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        mlp_hidden = int(hidden_size * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, mlp_hidden),
            nn.GELU(approximate="tanh"),
            nn.Dropout(dropout),
            nn.Linear(mlp_hidden, hidden_size),
        )
        self.modulation = nn.Sequential(nn.SiLU(), zero_init(nn.Linear(hidden_size, 6 * hidden_size)))

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c)[:, None].chunk(6, dim=-1)
        h = h + gate1 * self.attention(modulate(self.norm1(h), shift1, scale1))
        return h + gate2 * self.mlp(modulate(self.norm2(h), shift2, scale2))


class FinalLayer(nn.Module):
    """adaLN (shift and scale from c) then a zero-initialised linear map from a token to its output patch.

    Args:
        hidden_size: Token width.
        patch_values: Values per output patch, ``patch_size**2 * out_channels``.
    """

    def __init__(self, hidden_size: int, patch_values: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), zero_init(nn.Linear(hidden_size, 2 * hidden_size)))
        self.linear = zero_init(nn.Linear(hidden_size, patch_values))

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.modulation(c)[:, None].chunk(2, dim=-1)
        return self.linear(modulate(self.norm(h), shift, scale))


class SiT(nn.Module):
    """SiT/DiT velocity model: ``forward(x, t, y=None) -> (B, out_channels, H, W)``.

    A ``Conv2d(kernel=stride=patch_size)`` patch embedding, the fixed :func:`position_embedding_2d`,
    ``depth`` :class:`SiTBlock` s and a :class:`FinalLayer`, initialised as in DiT (Xavier-uniform linear
    layers, embeddings and time MLP from N(0, 0.02²), adaLN modulations and the output layer at zero), so an
    untrained model outputs 0. Attention costs grow with the square of the token count
    ``(H / patch_size) * (W / patch_size)``; on a CPU keep it below a few hundred.

    Args:
        image_size: ``H`` (square) or ``(H, W)``; both must be multiples of ``patch_size``.
        in_channels: Channels of x.
        patch_size: Side of the square patches, one token each.
        hidden_size: Token width; also the width of the time/class embedding.
        depth: Number of transformer blocks.
        num_heads: Attention heads; must divide ``hidden_size``.
        mlp_ratio: Width of each block's MLP relative to ``hidden_size``.
        out_channels: Channels of the output; defaults to ``in_channels``.
        num_classes: Number of classes for a class-conditional model; None for an unconditional one.
            A conditional model has one more, "null" class (:attr:`null_class`) for classifier-free guidance.
        dropout: Dropout probability in the blocks' MLPs and attention outputs.
        frequency_dim: Number of sinusoidal features of t (DiT's 256).
        time_scale: Factor applied to t in [0, 1] before the sinusoidal embedding (DiT's 1000 steps).
    """

    def __init__(
        self,
        image_size: int | tuple[int, int],
        in_channels: int,
        patch_size: int = 2,
        hidden_size: int = 128,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        out_channels: int | None = None,
        num_classes: int | None = None,
        dropout: float = 0.0,
        frequency_dim: int = 256,
        time_scale: float = DEFAULT_TIME_SCALE,
    ) -> None:
        super().__init__()
        if isinstance(image_size, int):
            size: tuple[Any, ...] = (image_size, image_size)
        else:
            size = tuple(image_size) if isinstance(image_size, (tuple, list)) else ()
        if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
            raise ValueError(f"image_size must be a positive int or a pair (H, W) of them, got {image_size!r}")
        for name, value in (("in_channels", in_channels), ("patch_size", patch_size), ("hidden_size", hidden_size),
                            ("depth", depth), ("num_heads", num_heads)):
            positive_int(name, value)
        if out_channels is not None:
            positive_int("out_channels", out_channels)
        if size[0] % patch_size or size[1] % patch_size:
            raise ValueError(
                f"image_size {size} must be a multiple of patch_size={patch_size} on both sides "
                "(pad or crop the images, or pick a patch size dividing both)"
            )
        if hidden_size % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide hidden_size={hidden_size}")
        if int(hidden_size * mlp_ratio) < 1:
            raise ValueError(f"mlp_ratio must give an MLP width >= 1, got {mlp_ratio!r}")
        finite_float("dropout", dropout, low=0.0, high=1.0, high_open=True)
        self.image_size: tuple[int, int] = (size[0], size[1])
        self.in_channels = in_channels
        self.out_channels = in_channels if out_channels is None else out_channels
        self.patch_size = patch_size
        self.grid_size = (size[0] // patch_size, size[1] // patch_size)
        self.num_classes = num_classes

        self.embed = ConditionEmbedding(frequency_dim, hidden_size, num_classes, time_scale)
        self.patch_embed = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)
        # Computed, not learned: kept out of the state dict so a checkpoint holds only trained weights.
        self.register_buffer("pos_embed", position_embedding_2d(hidden_size, self.grid_size), persistent=False)
        self.blocks = nn.ModuleList(SiTBlock(hidden_size, num_heads, mlp_ratio, dropout) for _ in range(depth))
        self.final = FinalLayer(hidden_size, patch_size * patch_size * self.out_channels)
        self._initialize()

    @classmethod
    def from_preset(
        cls, name: str, in_channels: int, num_classes: int | None = None, **overrides: Any
    ) -> SiT:
        """Builds the :data:`SIT_PRESETS` configuration ``name``, with any constructor argument overridden.

        Raises:
            ValueError: If ``name`` is not a preset.
        """
        choice("name", name, sorted(SIT_PRESETS))
        return cls(**{**SIT_PRESETS[name], "in_channels": in_channels, "num_classes": num_classes, **overrides})

    def _initialize(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        # The patch embedding is a linear map of each flattened patch.
        nn.init.xavier_uniform_(self.patch_embed.weight.view(self.patch_embed.out_channels, -1))
        assert self.patch_embed.bias is not None  # built with a bias (Conv2d's default)
        nn.init.zeros_(self.patch_embed.bias)
        for layer in self.embed.time.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.02)
        if self.embed.label is not None:
            nn.init.normal_(self.embed.label.embedding.weight, std=0.02)
        for block in self.blocks:
            assert isinstance(block, SiTBlock)  # what self.blocks holds; nn.ModuleList does not say
            zero_init(block.modulation)
        zero_init(self.final.modulation)
        zero_init(self.final.linear)

    @property
    def null_class(self) -> int | None:
        """The label meaning "no class" (``num_classes``) for classifier-free guidance; None if unconditional."""
        return self.embed.null_class

    def unpatchify(self, tokens: Tensor) -> Tensor:
        """``(B, H/p * W/p, p * p * C)`` tokens, each ordered (patch row, patch column, channel) -> ``(B, C, H, W)``."""
        p, (gh, gw) = self.patch_size, self.grid_size
        patches = tokens.reshape(tokens.shape[0], gh, gw, p, p, self.out_channels)
        return patches.permute(0, 5, 1, 3, 2, 4).reshape(tokens.shape[0], self.out_channels, gh * p, gw * p)

    def forward(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """Evaluates the model.

        Args:
            x: ``(B, in_channels, H, W)`` state, ``(H, W)`` the model's ``image_size``.
            t: ``(B,)`` float times in [0, 1]; a python number or 0-d tensor is broadcast to all samples.
                Kept in float32 whatever x's dtype.
            y: ``(B,)`` integer labels in ``[0, num_classes]`` for a class-conditional model
                (``num_classes`` is the null class); None means the null class. Must be None for an
                unconditional model.

        Returns:
            ``(B, out_channels, H, W)``.

        Raises:
            ValueError: If x has the wrong rank, channel count or size, t the wrong length or an integer
                dtype, or y is given to an unconditional model, has the wrong shape, or holds an unknown label.
        """
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.in_channels, *self.image_size):
            raise ValueError(
                f"x must have shape (B, {self.in_channels}, {self.image_size[0]}, {self.image_size[1]}), "
                f"got {tuple(x.shape)}"
            )
        c = self.embed(t, y, x.shape[0], x.device)
        h = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        for block in self.blocks:
            h = block(h, c)
        return self.unpatchify(self.final(h, c))
