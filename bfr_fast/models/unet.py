"""ADM-style UNet (Dhariwal & Nichol, 2021) for images of any size, odd ones included.

The encoder halves the resolution between levels with a stride-2 convolution (ceil: 7 -> 4); the decoder
upsamples to the exact size of the skip it is about to concatenate, so 28 -> 14 -> 7 -> 4 comes back as
4 -> 7 -> 14 -> 28. Time (and class) enter every residual block through the scale and shift of its
second GroupNorm (AdaGN): ``h = GN(h) * (1 + s(emb)) + b(emb)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bfr_fast.checks import finite_float, integer, positive_int
from bfr_fast.models.embeddings import DEFAULT_TIME_SCALE, ConditionEmbedding
from bfr_fast.models.layers import group_norm, zero_init


class ResBlock(nn.Module):
    """``x + conv(drop(SiLU(AdaGN(conv(SiLU(GN(x))), emb))))`` with a 1x1 skip when the width changes.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        embed_dim: Width of the time/class embedding.
        dropout: Dropout probability before the last convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, embed_dim: int, dropout: float) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(
            group_norm(in_channels), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(embed_dim, 2 * out_channels))
        self.out_norm = group_norm(out_channels)
        self.out_layers = nn.Sequential(
            nn.SiLU(), nn.Dropout(dropout), zero_init(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.in_layers(x)
        scale, shift = self.emb_layers(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.out_norm(h) * (1 + scale) + shift
        return self.skip(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all positions, residual, with a zero-initialised output projection.

    Args:
        channels: Channels C (the token width).
        num_heads: Number of heads; must divide C.
    """

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm = group_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj_out = zero_init(nn.Linear(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        b, c, height, width = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        q, k, v = (
            self.qkv(tokens).reshape(b, -1, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        )  # each (B, heads, HW, C/heads)
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, c)
        return x + self.proj_out(h).transpose(1, 2).reshape(b, c, height, width)


class Downsample(nn.Module):
    """Stride-2 3x3 convolution: ``n -> ceil(n / 2)`` per spatial side."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling to the skip's size (``2n``, or ``2n - 1`` after an odd side), then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        return self.conv(F.interpolate(x, size=size, mode="nearest"))


class _Stage(nn.ModuleList):
    """Layers applied in order; each gets the inputs its kind needs (the embedding, the output size)."""

    def forward(self, x: Tensor, emb: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb)
            elif isinstance(layer, Upsample):
                if size is None:
                    raise RuntimeError("an upsampling stage needs the size of the skip it feeds")
                x = layer(x, size)
            else:
                x = layer(x)
        return x


class UNet(nn.Module):
    """ADM-style UNet velocity (or noise) model: ``forward(x, t, y=None) -> (B, out_channels, H, W)``.

    Level ``i`` of the encoder runs at ``ds = 2**i`` times below the input resolution with
    ``model_channels * channel_mult[i]`` channels and ``num_res_blocks`` residual blocks; the decoder
    mirrors it with one more block per level, each fed the matching encoder activation. The middle is
    ResBlock, attention, ResBlock. The last convolution starts at zero, so an untrained model outputs 0.

    Args:
        in_channels: Channels of x.
        model_channels: Base width.
        out_channels: Channels of the output; defaults to ``in_channels``.
        channel_mult: Width multiplier of each level (its length is the number of levels).
        num_res_blocks: Residual blocks per encoder level.
        attention_resolutions: Downsampling factors ``ds`` at which blocks get self-attention, as in ADM:
            for an 8x8 input, ``(2,)`` puts attention at 4x4. Each must be one of the levels' factors.
        dropout: Dropout probability inside residual blocks.
        num_classes: Number of classes for a class-conditional model; None for an unconditional one.
            A conditional model has one more, "null" class (:attr:`null_class`) for classifier-free guidance.
        num_heads: Attention heads (ignored when ``num_head_channels`` is given).
        num_head_channels: Channels per attention head; the head count then grows with the width.
        time_scale: Factor applied to t in [0, 1] before the sinusoidal embedding (ADM's 1000 steps).
    """

    def __init__(
        self,
        in_channels: int,
        model_channels: int,
        out_channels: int | None = None,
        channel_mult: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (2,),
        dropout: float = 0.0,
        num_classes: int | None = None,
        num_heads: int = 4,
        num_head_channels: int | None = None,
        time_scale: float = DEFAULT_TIME_SCALE,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("num_res_blocks", num_res_blocks), ("num_heads", num_heads)):
            positive_int(name, value)
        if out_channels is not None:
            positive_int("out_channels", out_channels)
        integer("model_channels", model_channels, low=2, why="it is also the number of sinusoidal features")
        if not channel_mult or any(m < 1 for m in channel_mult):
            raise ValueError(f"channel_mult must be a non-empty sequence of positive ints, got {channel_mult}")
        factors = [2**i for i in range(len(channel_mult))]
        unknown = sorted(set(attention_resolutions) - set(factors))
        if unknown:
            raise ValueError(
                f"attention_resolutions must be downsampling factors among {factors} "
                f"(for len(channel_mult)={len(channel_mult)}), got {unknown}"
            )
        finite_float("dropout", dropout, low=0.0, high=1.0, high_open=True)
        self.in_channels = in_channels
        self.out_channels = in_channels if out_channels is None else out_channels
        self.num_classes = num_classes

        embed_dim = 4 * model_channels
        self.embed = ConditionEmbedding(model_channels, embed_dim, num_classes, time_scale)

        def attention(channels: int) -> AttentionBlock:
            heads = num_heads if num_head_channels is None else channels // num_head_channels
            if heads < 1 or channels % heads:
                raise ValueError(
                    f"attention at width {channels} needs num_heads (or channels / num_head_channels) "
                    f"dividing it; got {heads} heads"
                )
            return AttentionBlock(channels, heads)

        ch = model_channels
        self.input_conv = nn.Conv2d(in_channels, ch, 3, padding=1)
        skip_channels = [ch]
        self.down = nn.ModuleList()
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                stage = _Stage([ResBlock(ch, mult * model_channels, embed_dim, dropout)])
                ch = mult * model_channels
                if 2**level in attention_resolutions:
                    stage.append(attention(ch))
                self.down.append(stage)
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                self.down.append(_Stage([Downsample(ch)]))
                skip_channels.append(ch)

        self.middle = _Stage(
            [ResBlock(ch, ch, embed_dim, dropout), attention(ch), ResBlock(ch, ch, embed_dim, dropout)]
        )

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                stage = _Stage([ResBlock(ch + skip_channels.pop(), mult * model_channels, embed_dim, dropout)])
                ch = mult * model_channels
                if 2**level in attention_resolutions:
                    stage.append(attention(ch))
                if level and i == num_res_blocks:
                    stage.append(Upsample(ch))
                self.up.append(stage)

        self.output = nn.Sequential(
            group_norm(ch), nn.SiLU(), zero_init(nn.Conv2d(ch, self.out_channels, 3, padding=1))
        )

    @property
    def null_class(self) -> int | None:
        """The label meaning "no class" (``num_classes``) for classifier-free guidance; None if unconditional."""
        return self.embed.null_class

    def forward(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """Evaluates the model.

        Args:
            x: ``(B, in_channels, H, W)`` state.
            t: ``(B,)`` float times in [0, 1]; a python number or 0-d tensor is broadcast to all samples.
                Kept in float32 whatever x's dtype.
            y: ``(B,)`` integer labels in ``[0, num_classes]`` for a class-conditional model
                (``num_classes`` is the null class); None means the null class. Must be None for an
                unconditional model.

        Returns:
            ``(B, out_channels, H, W)``.

        Raises:
            ValueError: If x has the wrong rank or channel count, t the wrong length or an integer dtype,
                or y is given to an unconditional model, has the wrong shape, or holds an unknown label.
        """
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        emb = self.embed(t, y, x.shape[0], x.device)
        h = self.input_conv(x)
        skips = [h]
        for stage in self.down:
            h = stage(h, emb)
            skips.append(h)
        h = self.middle(h, emb)
        for stage in self.up:
            h = torch.cat([h, skips.pop()], dim=1)
            h = stage(h, emb, size=skips[-1].shape[-2:] if skips else None)
        return self.output(h)

