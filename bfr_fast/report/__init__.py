"""Reports: markdown result tables, PNG image grids, and molecular figures (energy histograms, Ramachandran),
the spectral diagnostics (PFR/FEL against t) as PNG and JSON, and training curves as PNG."""

from bfr_fast.report.curve_plots import plot_training_curve
from bfr_fast.report.grid import image_grid, save_image_grid
from bfr_fast.report.molecular_plots import (
    plot_coverage_curves,
    plot_energy_histograms,
    plot_ramachandran,
    write_coverage_curves,
)
from bfr_fast.report.spectral_plots import plot_exposure_bias_maps, plot_spectral_curves, write_spectral_curves
from bfr_fast.report.tables import markdown_table, summarize

__all__ = [
    "image_grid",
    "markdown_table",
    "plot_coverage_curves",
    "plot_energy_histograms",
    "plot_ramachandran",
    "plot_exposure_bias_maps",
    "plot_spectral_curves",
    "plot_training_curve",
    "save_image_grid",
    "summarize",
    "write_coverage_curves",
    "write_spectral_curves",
]
