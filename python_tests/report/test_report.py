"""Report helpers: grids round pixels and lay images out row-major; tables show every column."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bfr_fast.report import image_grid, markdown_table, save_image_grid


def test_grid_layout_and_rounding():
    images = torch.full((3, 1, 2, 2), -1.0)
    images[1] = 1.0
    images[2] = 2 * (254.6 / 255) - 1  # 254.6 on the 0..255 scale rounds to 255, truncation would give 254
    grid = image_grid(images, nrow=2, padding=1)
    assert grid.shape == (2 * 3 + 1, 2 * 3 + 1, 1)
    assert (grid[1:3, 1:3] == 0).all() and (grid[1:3, 4:6] == 255).all() and (grid[4:6, 1:3] == 255).all()
    assert grid[4, 1, 0] == 255


def test_grid_scale_repeats_pixels():
    images = torch.tensor([[[[-1.0, 1.0]]]])
    grid = image_grid(images, nrow=1, padding=0, scale=3)
    assert grid.shape == (3, 6, 1)
    assert (grid[:, :3] == 0).all() and (grid[:, 3:] == 255).all()


def test_save_png_round_trip(tmp_path):
    images = torch.rand(4, 3, 5, 5) * 2 - 1
    path = save_image_grid(images, tmp_path / "g.png", nrow=2)
    assert np.array_equal(np.asarray(Image.open(path)), image_grid(images, nrow=2))


def test_grid_rejects_bad_shapes():
    with pytest.raises(ValueError, match="images must be"):
        image_grid(torch.zeros(2, 2, 4, 4))


def test_markdown_table():
    table = markdown_table([{"a": 1.23456, "b": "x"}, {"a": None}], [("a", "A"), ("b", "B")], digits=3)
    assert table.splitlines() == ["| A | B |", "|---|---|", "| 1.23 | x |", "| — | — |"]
