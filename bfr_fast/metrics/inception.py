"""The standard Inception-v3 features, through clean-fid's TorchScript file, from a user-supplied path.

The file is the TorchScript translation of TensorFlow's ``inception-2015-12-05`` graph that StyleGAN2-ADA
published and clean-fid uses. Nothing is downloaded: the user passes its path.

Preprocessing follows clean-fid's "clean" mode: images become uint8 by rounding from [-1, 1]
(:func:`bfr_fast.data.to_uint8`, the mapping image grids use too), grayscale is repeated to 3 channels, each
channel is resized to 299x299 by PIL's bicubic filter on float32 values (clipped to [0, 255]), and the
network's ``layers`` see ``(x - 128) / 128``. The outputs are:

- features: the 2048-d pool3 output, exactly what clean-fid computes for FID/KID;
- logits: ``pool3 @ W_outputᵀ`` without the output bias, as the original Inception Score did
  (StyleGAN2-ADA's ``no_output_bias=True``); 1008 classes;
- spatial: sFID's ``mixed_6/conv``: the first 7 channels of the 17x17 output of the ``conv`` branch of the
  ``mixed_6`` block, flattened (7x17x17 = 2023 dims).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bfr_fast.data import to_uint8
from bfr_fast.metrics.extractor import FeatureExtractor

INCEPTION_NAME = "inception"
INCEPTION_FILENAME = "inception-2015-12-05.pt"
INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
INCEPTION_SIZE = 299
SPATIAL_BLOCK = "mixed_6"
SPATIAL_CHANNELS = 7


def clean_resize(images: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """clean-fid's "clean" resize: PIL bicubic per channel on float32 values, clipped to [0, 255].

    Args:
        images: ``(N, C, H, W)`` uint8 tensor.
        size: output height and width.

    Returns:
        ``(N, C, size, size)`` float32 tensor in [0, 255], on the CPU.
    """
    pixels = images.cpu().numpy().astype(np.float32)
    out = np.empty((*pixels.shape[:2], size, size), dtype=np.float32)
    for n in range(pixels.shape[0]):
        for c in range(pixels.shape[1]):
            resized = Image.fromarray(pixels[n, c], mode="F").resize((size, size), resample=Image.Resampling.BICUBIC)
            out[n, c] = np.asarray(resized).clip(0, 255)
    return torch.from_numpy(out)


class InceptionExtractor(FeatureExtractor):
    """Inception-v3 features as clean-fid computes them (see the module docstring).

    Args:
        path: the file ``inception-2015-12-05.pt``, or a folder holding it.
        device: where the network runs.
        batch_size: images per forward pass.

    Raises:
        FileNotFoundError: the file is not there (nothing is downloaded).
        ValueError: the file is not clean-fid's Inception TorchScript file.
    """

    name = INCEPTION_NAME

    def __init__(self, path: str | os.PathLike[str], device: torch.device | str = "cpu", batch_size: int = 32) -> None:
        super().__init__(device, batch_size)
        file = Path(path)
        if file.is_dir():
            file = file / INCEPTION_FILENAME
        if not file.is_file():
            raise FileNotFoundError(
                f"Inception weights not found at {file}. Download {INCEPTION_FILENAME} from {INCEPTION_URL} "
                "and pass its path (or its folder); bfr_fast never downloads it. Without it, use the offline "
                "ClassifierExtractor (scores labelled FD-<name>, not FID)."
            )
        with warnings.catch_warnings():
            # TorchScript is deprecated in recent torch, but this file exists only in that format.
            warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=Warning)
            try:
                self.model = torch.jit.load(str(file), map_location=self.device).eval()
            except (RuntimeError, ValueError) as error:  # torch's message calls any such file a corrupted checkpoint
                raise ValueError(
                    f"{file} is not clean-fid's Inception TorchScript file ({str(error).split('. ')[0]}); download "
                    f"{INCEPTION_FILENAME} from {INCEPTION_URL} and pass its path"
                ) from None
        self.path = file
        available = {"features"}
        if hasattr(self.model, "output") and hasattr(self.model.output, "weight"):
            available.add("logits")
        blocks = getattr(self.model, "layers", None)
        if blocks is None:
            raise ValueError(f"{file} is not clean-fid's Inception TorchScript file: it has no 'layers' module")
        self._blocks = list(blocks.named_children())
        if any(name == SPATIAL_BLOCK and hasattr(block, "conv") for name, block in self._blocks):
            available.add("spatial")
        self.available = frozenset(available)

    def _check_input(self, images: torch.Tensor) -> None:
        super()._check_input(images)
        if images.shape[1] not in (1, 3):
            raise ValueError(f"images must have 1 or 3 channels for Inception, got shape {tuple(images.shape)}")

    def _forward(self, batch: torch.Tensor, outputs: frozenset[str]) -> dict[str, torch.Tensor]:
        resized = clean_resize(to_uint8(batch))
        if resized.shape[1] == 1:
            resized = resized.repeat(1, 3, 1, 1)
        x = (resized.to(self.device) - 128.0) / 128.0
        result: dict[str, torch.Tensor] = {}
        if "spatial" in outputs:
            # Walk the blocks one by one (what layers.forward does) to read mixed_6's conv branch on the way.
            for name, block in self._blocks:
                if name == SPATIAL_BLOCK:
                    result["spatial"] = block.conv(x)[:, :SPATIAL_CHANNELS].flatten(1)
                x = block(x)
        else:
            x = self.model.layers.forward(x)
        features = x.reshape(x.shape[0], 2048)
        result["features"] = features
        if "logits" in outputs:
            result["logits"] = F.linear(features, self.model.output.weight)
        return result
