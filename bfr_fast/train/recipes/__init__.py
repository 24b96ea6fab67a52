"""Named experiments for ``python -m bfr_fast.train --recipe NAME``."""

from bfr_fast.train.recipes import (
    ala2,
    bfr,
    bfr_alpha,
    bfr_transfer,
    defar,
    defar_ablation,
    defar_spectra,
    flow,
)
from bfr_fast.train.recipes.base import Recipe, RunContext, RunResult

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (bfr.RECIPE, bfr_transfer.RECIPE, bfr_alpha.RECIPE, flow.RECIPE, defar.RECIPE, defar_spectra.RECIPE,
              defar_ablation.RECIPE, ala2.RECIPE, ala2.DDPM_RECIPE)
}
DEFAULT_RECIPE = "bfr"

__all__ = ["DEFAULT_RECIPE", "RECIPES", "Recipe", "RunContext", "RunResult"]
