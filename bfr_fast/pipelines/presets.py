"""Default network and optimisation settings per data set size: small enough on the small sets for the CPU jobs
of ``docs/results``."""

from __future__ import annotations

from dataclasses import dataclass

from bfr_fast.models import UNet


@dataclass(frozen=True)
class ImagePreset:
    """A UNet configuration with the training budget that suits it."""

    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    attention_resolutions: tuple[int, ...]
    steps: int
    batch_size: int
    lr: float
    num_samples: int

    def build(self, channels: int, num_classes: int | None) -> UNet:
        return UNet(
            channels,
            self.model_channels,
            channel_mult=self.channel_mult,
            num_res_blocks=self.num_res_blocks,
            attention_resolutions=self.attention_resolutions,
            num_classes=num_classes,
        )


def image_preset(image_shape: tuple[int, int, int]) -> ImagePreset:
    """The preset for images of ``(C, H, W)``: small for 8x8 digits, medium for 28x28, ADM-like beyond."""
    side = max(image_shape[1:])
    if side <= 16:
        return ImagePreset(32, (1, 2), 1, (2,), steps=2500, batch_size=128, lr=1e-3, num_samples=1000)
    if side <= 28:
        return ImagePreset(32, (1, 2, 2), 1, (4,), steps=4000, batch_size=64, lr=1e-3, num_samples=1000)
    return ImagePreset(64, (1, 2, 2, 2), 2, (2,), steps=50_000, batch_size=128, lr=2e-4, num_samples=10_000)
