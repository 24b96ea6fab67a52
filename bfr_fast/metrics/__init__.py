"""Metrics: image metrics on feature extractors (Inception or a classifier trained on the data set), and
molecular metrics (coverage and AMR by RMSD, OpenMM energy error), and spectral diagnostics of exposure bias
(PFR, FEL against t)."""

from bfr_fast.metrics.classifier import ClassifierExtractor, ClassifierNet, TrainedClassifier, train_classifier
from bfr_fast.metrics.extractor import OUTPUT_KINDS, FeatureExtractor, ImageFeatures
from bfr_fast.metrics.image import (
    evaluate_images,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    metric_label,
    precision_recall,
)
from bfr_fast.metrics.inception import InceptionExtractor
from bfr_fast.metrics.molecular import (
    apply_constraints,
    coverage_amr,
    coverage_curve,
    energy_error,
    format_coverage_amr,
    format_energy_error,
    molecular_metrics,
    nearest_rmsd,
    openmm_energies,
)
from bfr_fast.metrics.spectral import CURVE_NAMES, fc_weight_map, fel, fel_region_masks, pfr

__all__ = [
    "CURVE_NAMES",
    "OUTPUT_KINDS",
    "ClassifierExtractor",
    "ClassifierNet",
    "FeatureExtractor",
    "ImageFeatures",
    "InceptionExtractor",
    "TrainedClassifier",
    "apply_constraints",
    "coverage_amr",
    "coverage_curve",
    "energy_error",
    "evaluate_images",
    "fc_weight_map",
    "fel",
    "fel_region_masks",
    "format_coverage_amr",
    "format_energy_error",
    "frechet_distance",
    "inception_score",
    "kernel_inception_distance",
    "metric_label",
    "molecular_metrics",
    "nearest_rmsd",
    "openmm_energies",
    "pfr",
    "precision_recall",
    "train_classifier",
]
