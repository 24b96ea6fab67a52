"""The spectral diagnostics of :func:`bfr_fast.pipelines.spectra.spectral_curves` as a PNG figure and a JSON file.

Figures are drawn on :class:`matplotlib.figure.Figure` directly (the Agg renderer, no pyplot), so nothing here
changes a user's global matplotlib backend; both files are written atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bfr_fast.checkpoint import atomic_write
from bfr_fast.metrics.spectral import CURVE_NAMES

__all__ = ["plot_exposure_bias_maps", "plot_spectral_curves", "write_spectral_curves"]

_PANELS = (
    ("PFR", (("pfr_velocity", "predicted velocity v"), ("pfr_target", "target u"),
             ("pfr_exposure_bias", "exposure bias δ"))),
    ("FEL", (("fel_plain", "plain loss"), ("fel_reweighted", "FC-reweighted, δ at t (single time)"),
             ("fel_reweighted_as_trained", "FC-reweighted, δ at t_e ~ U(t, 1) (as trained)"))),
)


def _curves(curves: Mapping[str, object]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``t`` and the named curves as float64 arrays of one length; ValueError naming what is missing."""
    missing = [name for name in ("t", *CURVE_NAMES) if name not in curves]
    if missing:
        raise ValueError(f"curves: missing {missing}; expected the dict of bfr_fast.pipelines.spectra.spectral_curves")
    t = np.asarray(curves["t"], dtype=np.float64).ravel()
    arrays = {name: np.asarray(curves[name], dtype=np.float64).ravel() for name in CURVE_NAMES}
    for name, values in arrays.items():
        if values.shape != t.shape:
            raise ValueError(f"curves: {name!r} has {values.size} points, 't' has {t.size}")
    return t, arrays


def plot_spectral_curves(curves: Mapping[str, object], path: str | Path) -> Path:
    """Two panels against t: PFR of the predicted velocity and of the exposure bias, and FEL of the plain and
    the FC-reweighted loss, each on a log y axis. Non-finite points (the ratios' zero-denominator policy) are
    left out, and the legend says how many.

    Args:
        curves: The dict of :func:`bfr_fast.pipelines.spectra.spectral_curves` (``"t"`` and the curves; ``"settings"``, if
            present, titles the figure with the cutoff and the sample count).
        path: The PNG file to write.

    Returns:
        ``path``.

    Raises:
        ValueError: If a curve is missing or has a different length than ``"t"``.
    """
    from matplotlib.figure import Figure

    t, arrays = _curves(curves)
    figure = Figure(figsize=(10.0, 4.0))
    for index, (ylabel, lines) in enumerate(_PANELS):
        axes = figure.add_subplot(1, 2, index + 1)
        for name, label in lines:
            values = arrays[name]
            shown = np.isfinite(values) & (values > 0)
            if (~shown).any():
                label = f"{label} ({int((~shown).sum())} points not positive finite)"
            axes.plot(t[shown], values[shown], marker=".", label=label)
        if any((arrays[name][np.isfinite(arrays[name])] > 0).any() for name, _ in lines):
            axes.set_yscale("log")
        axes.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        axes.set_xlabel("t (0 = noise, 1 = data)")
        axes.set_ylabel(ylabel)
        axes.legend(fontsize="small")
    settings = curves.get("settings")
    if isinstance(settings, Mapping):
        figure.suptitle(f"cutoff {settings.get('cutoff')} of Nyquist, {settings.get('num_samples')} samples",
                        fontsize="medium")
    return atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=120, bbox_inches="tight"))


def plot_exposure_bias_maps(
    images: np.ndarray, references: np.ndarray, maps: np.ndarray, times: Sequence[float], path: str | Path,
    title: str = "",
) -> Path:
    """A grid with one row per image: the image, a reference map beside it (e.g. its distance to its class mean),
    and its :math:`|\\delta|` map at each time (DEFAR's Fig. 3c). Every map is scaled to its own maximum, so the
    panels show where the bias lies, not how large it is.

    Args:
        images: ``(B, H, W)`` images in [-1, 1].
        references: ``(B, H, W)`` non-negative maps shown after the images.
        maps: ``(B, T, H, W)`` non-negative maps, one per time.
        times: The T times, for the column titles.
        path: The PNG file to write.
        title: Figure title (say which maps these are).

    Returns:
        ``path``.

    Raises:
        ValueError: On shapes that do not match.
    """
    from matplotlib.figure import Figure

    images, references, maps = (np.asarray(a, dtype=np.float64) for a in (images, references, maps))
    b, h, w = images.shape
    if references.shape != (b, h, w) or maps.shape != (b, len(times), h, w):
        raise ValueError(f"shapes: images {images.shape}, references {references.shape} (same), maps {maps.shape} "
                         f"(expected {(b, len(times), h, w)})")
    columns = 2 + len(times)
    figure = Figure(figsize=(1.3 * columns, 1.3 * b + 0.6))
    heads = ["image", "|x₁ − class mean|", *(f"|δ|, t = {t:.2f}" for t in times)]
    for row in range(b):
        panels = [(images[row], "gray", -1.0, 1.0), (references[row], "magma", 0.0, None),
                  *((maps[row, k], "magma", 0.0, None) for k in range(len(times)))]
        for col, (field, cmap, low, high) in enumerate(panels):
            axes = figure.add_subplot(b, columns, row * columns + col + 1)
            axes.imshow(field, cmap=cmap, vmin=low, vmax=high if high is not None else max(field.max(), 1e-12))
            axes.set_xticks([])
            axes.set_yticks([])
            if row == 0:
                axes.set_title(heads[col], fontsize="x-small")
    if title:
        figure.suptitle(title, fontsize="small")
    return atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=110, bbox_inches="tight"))


def _jsonable(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (np.ndarray, list, tuple)):
        return [_jsonable(v) for v in np.asarray(value, dtype=object).ravel().tolist()]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_spectral_curves(curves: Mapping[str, object], path: str | Path) -> Path:
    """Writes the curves as JSON: ``{"t": [...], "<curve>": [...], ..., "settings": {...}}``.

    Non-finite values (``inf`` and ``nan`` of the ratios' zero-denominator policy) are written as ``null``, so the
    file is strict JSON that any parser reads.

    Args:
        curves: The dict of :func:`bfr_fast.pipelines.spectra.spectral_curves`.
        path: The JSON file to write.

    Returns:
        ``path``.

    Raises:
        ValueError: If a curve is missing or has a different length than ``"t"``.
    """
    _curves(curves)
    text = json.dumps(_jsonable(curves), indent=2, allow_nan=False) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))
