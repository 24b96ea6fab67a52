"""Figures of molecular results: energy histograms (the seed's Figure 6), Ramachandran plots and coverage against
the RMSD threshold, as PNG (the coverage curves also as JSON).

Figures are drawn on :class:`matplotlib.figure.Figure` directly (the Agg renderer, no pyplot), so nothing here
changes a user's global matplotlib backend, and the PNG is written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import mdtraj
import numpy as np
import torch

from bfr_fast.checkpoint import atomic_write
from bfr_fast.data.molecules import backbone_dihedrals

__all__ = ["plot_coverage_curves", "plot_energy_histograms", "plot_ramachandran", "write_coverage_curves"]


def _as_array(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def _save(figure, path: str | Path) -> Path:
    return atomic_write(path, lambda f: figure.savefig(f, format="png", dpi=120, bbox_inches="tight"))


def plot_energy_histograms(energies: Mapping[str, np.ndarray | torch.Tensor], path: str | Path, bins: int = 60,
                           margin: float = 0.5) -> Path:
    """One figure of energy densities: reference, base and each refiner overlaid (kJ/mol).

    Broken samples have energies orders of magnitude above the rest, which would squash every histogram into
    one bin; the x range is therefore the first set's (the reference's) finite range widened by ``margin``
    times its span on each side, and each legend entry says how many of its samples fall outside that range
    or are non-finite. Each histogram is a density normalised by all of its samples, so its area is the
    fraction shown.

    Args:
        energies: ``{name: (N,) energies}`` in plotting order, the reference first.
        path: the PNG file to write.
        bins: histogram bins over the shown range.
        margin: widening of the shown range on each side, as a fraction of the reference's span.

    Returns:
        ``path``.

    Raises:
        ValueError: if ``energies`` is empty, a set has no finite energy, or ``margin`` is negative.
    """
    from matplotlib.figure import Figure

    if not energies:
        raise ValueError("energies: expected at least one named set of energies, got none")
    if not margin >= 0:
        raise ValueError(f"margin: expected a non-negative number, got {margin}")
    arrays = {name: _as_array(values).ravel() for name, values in energies.items()}
    for name, values in arrays.items():
        if not np.isfinite(values).any():
            raise ValueError(f"energies: set {name!r} has no finite energy")
    first = next(iter(arrays.values()))
    low, high = first[np.isfinite(first)].min(), first[np.isfinite(first)].max()
    span = max(high - low, 1.0)
    edges = np.linspace(low - margin * span, high + margin * span, bins + 1)

    figure = Figure(figsize=(6.4, 4.0))
    axes = figure.add_subplot()
    for name, values in arrays.items():
        shown = values[np.isfinite(values) & (values >= edges[0]) & (values <= edges[-1])]
        hidden = values.size - shown.size
        label = f"{name} ({hidden} of {values.size} off the plot)" if hidden else name
        # normalised by all samples, not the shown ones: a set with samples off the plot has less area
        weights = np.full(shown.size, 1.0 / (values.size * (edges[1] - edges[0])))
        # matplotlib's stub types bins as Sequence[float], which an ndarray is not; hist takes any array-like
        axes.hist(shown, bins=edges, weights=weights, histtype="step", linewidth=1.5,  # type: ignore[arg-type]
                  label=label)
    axes.set_xlabel("potential energy (kJ/mol)")
    axes.set_ylabel("density")
    axes.legend(fontsize="small")
    return _save(figure, path)


def plot_ramachandran(coordinates: Mapping[str, np.ndarray | torch.Tensor], topology: mdtraj.Topology,
                      path: str | Path, bins: int = 72) -> Path:
    """Ramachandran plots (phi, psi 2-D histograms, log density) of several conformer sets side by side.

    Args:
        coordinates: ``{name: (N, atoms, 3) coordinates in nm}`` in plotting order (reference first).
        topology: the molecule's topology; the first phi/psi pair is plotted.
        path: the PNG file to write.
        bins: bins per angle over [-180, 180) degrees.

    Returns:
        ``path``.

    Raises:
        ValueError: if ``coordinates`` is empty or a set does not match the topology.
    """
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    if not coordinates:
        raise ValueError("coordinates: expected at least one named set of conformers, got none")
    edges = np.linspace(-180.0, 180.0, bins + 1)
    figure = Figure(figsize=(3.2 * len(coordinates), 3.4))
    for column, (name, frames) in enumerate(coordinates.items()):
        phi, psi = backbone_dihedrals(frames, topology)
        density, _, _ = np.histogram2d(phi[:, 0], psi[:, 0], bins=[edges, edges], density=True)
        axes = figure.add_subplot(1, len(coordinates), column + 1)
        positive = density[density > 0]
        norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if positive.size else None
        axes.pcolormesh(edges, edges, np.where(density > 0, density, np.nan).T, norm=norm, cmap="viridis")
        axes.set_title(f"{name} (n={len(phi)})", fontsize="medium")
        axes.set_xlabel("φ (degrees)")
        if column == 0:
            axes.set_ylabel("ψ (degrees)")
        axes.set_xlim(-180, 180)
        axes.set_ylim(-180, 180)
        axes.set_aspect("equal")
    return _save(figure, path)


def _check_curves(curves: Mapping[str, Mapping[str, object]]) -> np.ndarray:
    """The common threshold grid of ``curves`` (``{name: {"threshold", "cov_r", "cov_p"}}``), checked."""
    if not curves:
        raise ValueError("curves: expected at least one named coverage curve, got none")
    grid = None
    for name, curve in curves.items():
        try:
            taus = np.asarray(curve["threshold"], dtype=np.float64)
            values = [np.asarray(curve[key], dtype=np.float64) for key in ("cov_r", "cov_p")]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"curves: {name!r} must hold 'threshold', 'cov_r' and 'cov_p' lists of numbers") from None
        if taus.ndim != 1 or any(v.shape != taus.shape for v in values):
            raise ValueError(f"curves: {name!r} has 'threshold', 'cov_r' and 'cov_p' of different lengths")
        if grid is not None and not np.array_equal(grid, taus):
            raise ValueError(f"curves: {name!r} is on another threshold grid than the first curve; use one grid")
        grid = taus
    assert grid is not None  # curves is not empty
    return grid


def write_coverage_curves(curves: Mapping[str, Mapping[str, object]], path: str | Path, unit: str,
                          threshold: float, floor: str | None = None) -> Path:
    """Writes COV-R/COV-P against the threshold of every row as JSON (atomically).

    The file holds ``{"unit", "table_threshold", "floor", "threshold": [...], "rows": {name: {"cov_r": [...],
    "cov_p": [...]}}}``, coverages as fractions in [0, 1], thresholds in ``unit``.

    Args:
        curves: ``{name: {"threshold", "cov_r", "cov_p"}}`` on one threshold grid (see
            :func:`~bfr_fast.metrics.molecular.coverage_curve`).
        path: the JSON file to write.
        unit: the thresholds' unit, e.g. ``"angstrom"``.
        threshold: the threshold of the results table, same unit.
        floor: the name of the curve that is the reference data's own floor, if any.

    Returns:
        ``path``.

    Raises:
        ValueError: for empty or malformed curves, or curves on different grids.
    """
    grid = _check_curves(curves)
    payload = {"unit": unit, "table_threshold": float(threshold), "floor": floor, "threshold": grid.tolist(),
               "rows": {name: {key: np.asarray(curve[key], dtype=np.float64).tolist() for key in ("cov_r", "cov_p")}
                        for name, curve in curves.items()}}
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))


def plot_coverage_curves(curves: Mapping[str, Mapping[str, object]], path: str | Path, unit: str,
                         threshold: float, floor: str | None = None) -> Path:
    """COV-R and COV-P (%) against the RMSD threshold (log axis), one line per row, the floor dashed in black.

    Args:
        curves: ``{name: {"threshold", "cov_r", "cov_p"}}`` on one grid, coverages as fractions.
        path: the PNG file to write.
        unit: the thresholds' unit for the axis label, e.g. ``"Å"``.
        threshold: the results table's threshold, marked by a vertical line.
        floor: the name of the floor curve (drawn dashed, black), if any.

    Returns:
        ``path``.

    Raises:
        ValueError: for empty or malformed curves, or curves on different grids.
    """
    from matplotlib.figure import Figure

    grid = _check_curves(curves)
    figure = Figure(figsize=(11.0, 4.2))
    for column, (key, title) in enumerate((("cov_r", "COV-R (recall)"), ("cov_p", "COV-P (precision)"))):
        axes = figure.add_subplot(1, 2, column + 1)
        for name, curve in curves.items():
            style = dict(color="black", linestyle="--", linewidth=2.0) if name == floor else dict(linewidth=1.2)
            axes.plot(grid, 100 * np.asarray(curve[key], dtype=np.float64), label=name, **style)
        axes.axvline(threshold, color="grey", linewidth=0.8, linestyle=":")
        axes.set_xscale("log")
        axes.set_xlabel(f"threshold τ ({unit})")
        axes.set_ylabel(f"{title.split()[0]} (%)")
        axes.set_title(f"{title}; table τ = {threshold:g} {unit}", fontsize="medium")
        axes.set_ylim(-2, 102)
        if column == 1:
            axes.legend(fontsize="x-small", loc="lower right")
    return _save(figure, path)
