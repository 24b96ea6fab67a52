"""bfr_fast: refine flow-matching and diffusion generators, train them against exposure bias, measure them fast."""

__version__ = "0.1.0"
