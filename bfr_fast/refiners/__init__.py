"""Post-hoc refiners of a pretrained generator: BFR's data-space (DFR) and latent-space (LFR) refiners, and the
noise-injection and FMRefiner baselines.

Every refiner is a :class:`Refiner`: a velocity network with ``refine`` (the refiner ODE, honest NFE), ``save`` and
``load``, and a ``training_loss`` for :class:`~bfr_fast.engine.trainer.Trainer`. The base generator enters only
through :class:`FrozenGenerator`, when training data is made (:func:`build_pool`, :func:`build_inversion_cache`)
and when the LFR decodes its latents.

The refiners a refinement run trains, by name, are :data:`~bfr_fast.refiners.registry.REGISTRY`'s.
"""

from bfr_fast.refiners.base import Refiner, RefinerData, TrainingSet
from bfr_fast.refiners.dfr import DEFAULT_AUGMENTATION, DataFlowRefiner, GeneratedToRealLoss
from bfr_fast.refiners.fmrefiner import FMRefiner, FMRefinerLoss, bridge_path
from bfr_fast.refiners.generator import FrozenGenerator
from bfr_fast.refiners.inversion import InversionCache, build_inversion_cache
from bfr_fast.refiners.lfr import MIXINGS, LatentFlowRefiner, LatentFlowRefinerLoss, RefinedSample, mix_latents
from bfr_fast.refiners.noise_injection import NoiseInjectionRefiner
from bfr_fast.refiners.pool import FreshSamples, GeneratedSource, SamplePool, build_pool
from bfr_fast.refiners.reflow import ReflowLoss, reflow_pairs, student_of
from bfr_fast.refiners.registry import REGISTRY, RegisteredRefiner

__all__ = [
    "REGISTRY",
    "ReflowLoss",
    "reflow_pairs",
    "student_of",
    "DEFAULT_AUGMENTATION",
    "MIXINGS",
    "DataFlowRefiner",
    "FMRefiner",
    "FMRefinerLoss",
    "FreshSamples",
    "FrozenGenerator",
    "GeneratedSource",
    "GeneratedToRealLoss",
    "InversionCache",
    "LatentFlowRefiner",
    "LatentFlowRefinerLoss",
    "NoiseInjectionRefiner",
    "RefinedSample",
    "Refiner",
    "RefinerData",
    "RegisteredRefiner",
    "SamplePool",
    "TrainingSet",
    "bridge_path",
    "build_inversion_cache",
    "build_pool",
    "mix_latents",
]
