"""Metrics: image metrics on feature extractors (Inception or a classifier trained on the data set)."""

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

__all__ = [
    "OUTPUT_KINDS",
    "ClassifierExtractor",
    "ClassifierNet",
    "FeatureExtractor",
    "ImageFeatures",
    "InceptionExtractor",
    "TrainedClassifier",
    "evaluate_images",
    "frechet_distance",
    "inception_score",
    "kernel_inception_distance",
    "metric_label",
    "precision_recall",
    "train_classifier",
]
