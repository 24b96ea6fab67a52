"""Reports: markdown result tables, PNG image grids, and molecular figures (energy histograms, Ramachandran),
and the spectral diagnostics (PFR/FEL against t) as PNG and JSON."""

from bfr_fast.report.grid import image_grid, save_image_grid
from bfr_fast.report.molecular_plots import plot_energy_histograms, plot_ramachandran
from bfr_fast.report.spectral_plots import plot_spectral_curves, write_spectral_curves
from bfr_fast.report.tables import markdown_table, summarize

__all__ = [
    "image_grid",
    "markdown_table",
    "plot_energy_histograms",
    "plot_ramachandran",
    "plot_spectral_curves",
    "save_image_grid",
    "summarize",
    "write_spectral_curves",
]
