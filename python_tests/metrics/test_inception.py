"""The Inception extractor: its missing-file error, and its plumbing on a stand-in TorchScript file.

The real ``inception-2015-12-05.pt`` cannot be downloaded here. The stand-in has the same module layout that
clean-fid and sFID rely on (``layers`` with a ``mixed_6`` block that has a ``conv`` branch, ``pool2`` giving
2048 features, an ``output`` linear layer), so the preprocessing and the read-out of all three outputs are
checked against clean-fid's own code.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bfr_fast.metrics import InceptionExtractor
from bfr_fast.metrics.inception import INCEPTION_FILENAME, INCEPTION_URL


class _Mixed6(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)) + 0.5 * x.mean(dim=1, keepdim=True)


class _Pool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.project = nn.Conv2d(192, 2048, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(F.adaptive_avg_pool2d(x, 1))


class _StandInInception(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        # 299 -> 17x17, the resolution of the real mixed_6.
        self.layers = nn.Sequential(OrderedDict(conv=nn.AvgPool2d(17, 17), mixed_6=_Mixed6(), pool2=_Pool()))
        self.output = nn.Linear(2048, 1008)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return self.layers(img)


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.jit.ScriptModule]:
    folder = tmp_path_factory.mktemp("inception")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = _StandInInception().eval()
    with pytest.warns(Warning):  # torch.jit.script is deprecated in recent torch; the real file is TorchScript
        scripted = torch.jit.script(module)
    scripted.save(str(folder / INCEPTION_FILENAME))
    return folder, scripted


def _images(n: int, channels: int, size: int, seed: int) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_missing_file_names_it_and_says_where_to_get_it(tmp_path: Path) -> None:
    for path in (tmp_path, tmp_path / INCEPTION_FILENAME):
        with pytest.raises(FileNotFoundError) as error:
            InceptionExtractor(path)
        message = str(error.value)
        assert INCEPTION_FILENAME in message and str(tmp_path) in message
        assert INCEPTION_URL in message
        assert "never downloads" in message


def test_features_equal_clean_fid_pipeline(stand_in: tuple[Path, torch.jit.ScriptModule]) -> None:
    from cleanfid.inception_torchscript import InceptionV3W
    from cleanfid.resize import build_resizer

    folder, _ = stand_in
    images = _images(3, 3, 12, seed=0)
    pixels = torch.round((images + 1) * 127.5).to(torch.uint8)
    resize = build_resizer("clean")
    resized = np.stack([resize(p.permute(1, 2, 0).numpy()).transpose(2, 0, 1) for p in pixels])
    with torch.no_grad():
        expected = InceptionV3W(str(folder), download=False)(torch.from_numpy(resized)).numpy()

    extractor = InceptionExtractor(folder)
    assert extractor.name == "inception"
    assert extractor.available == {"features", "logits", "spatial"}
    np.testing.assert_allclose(extractor.features(images), expected, rtol=1e-5, atol=1e-5)
    # The one-pass walk through the blocks (used when spatial features are wanted) agrees with layers.forward.
    np.testing.assert_allclose(extractor.extract(images).features, expected, rtol=1e-5, atol=1e-5)


def test_logits_and_spatial_read_out(stand_in: tuple[Path, torch.jit.ScriptModule]) -> None:
    folder, model = stand_in
    extractor = InceptionExtractor(folder, batch_size=2)
    result = extractor.extract(_images(3, 3, 10, seed=1))
    assert result.features.shape == (3, 2048)
    assert result.logits is not None and result.spatial is not None
    # IS logits: the output layer without its bias (as the original Inception Score).
    weight = model.output.weight.detach().double().numpy()
    np.testing.assert_allclose(result.logits, result.features @ weight.T, rtol=1e-5, atol=1e-5)
    assert result.spatial.shape == (3, 7 * 17 * 17)


def test_spatial_features_are_the_first_channels_of_mixed_6_conv(stand_in: tuple[Path, torch.jit.ScriptModule]) -> None:
    # sFID's features, read off the stand-in's own blocks: clean-fid's resize, (x - 128) / 128, the stem, then
    # mixed_6's conv branch (not the block's output, which differs on the stand-in), its first 7 channels.
    from cleanfid.resize import build_resizer

    folder, model = stand_in
    images = _images(3, 3, 10, seed=4)
    pixels = torch.round((images + 1) * 127.5).to(torch.uint8)
    resize = build_resizer("clean")
    resized = torch.from_numpy(np.stack([resize(p.permute(1, 2, 0).numpy()).transpose(2, 0, 1) for p in pixels]))
    with torch.no_grad():
        stem = model.layers.conv((resized - 128) / 128)
        branch = model.layers.mixed_6.conv(stem)
        block = model.layers.mixed_6(stem)
    expected = branch[:, :7].flatten(1).double().numpy()
    got = InceptionExtractor(folder, batch_size=2).extract(images).spatial
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # The check can tell the neighbours of the intended layer apart from it.
    assert not np.allclose(block[:, :7].flatten(1).numpy(), expected, atol=1e-3)
    assert not np.allclose(branch[:, 7:14].flatten(1).numpy(), expected, atol=1e-3)
    assert np.abs(expected).max() > 1e-2


def test_uint8_conversion_rounds(stand_in: tuple[Path, torch.jit.ScriptModule]) -> None:
    folder, model = stand_in
    # 127.5 (x + 1) = 100.6: rounding gives pixel 101, truncation would give 100.
    image = torch.full((1, 3, 9, 9), 100.6 / 127.5 - 1)
    got = InceptionExtractor(folder).features(image)
    with torch.no_grad():
        for level, matches in ((101, True), (100, False)):
            expected = model.layers(torch.full((1, 3, 299, 299), (level - 128) / 128)).reshape(1, 2048)
            assert np.allclose(got, expected.double().numpy(), atol=1e-5) is matches


def test_grayscale_is_repeated_to_rgb(stand_in: tuple[Path, torch.jit.ScriptModule]) -> None:
    folder, _ = stand_in
    extractor = InceptionExtractor(folder)
    gray = _images(2, 1, 8, seed=2)
    np.testing.assert_allclose(extractor.features(gray), extractor.features(gray.repeat(1, 3, 1, 1)), atol=1e-6)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        extractor.features(_images(2, 2, 8, seed=3))
