"""Reports: markdown result tables and PNG image grids."""

from bfr_fast.report.grid import image_grid, save_image_grid
from bfr_fast.report.tables import markdown_table

__all__ = ["image_grid", "markdown_table", "save_image_grid"]
