"""Image data sets held in memory: embedded real data (digits, mnist5k), loaders for user files, a minibatch stream,
and the augmentation of generated samples for refiner training (:mod:`bfr_fast.data.augment`).

Every loader returns an :class:`ImageDataset` of float32 NCHW images in [-1, 1] with a fixed train/test split.
Nothing is downloaded: user data sets come from a path, and a missing file raises an error that says how to
supply it.

Molecular data (conformations in nm, reference MD with OpenMM, any trajectory through mdtraj) live in
:mod:`bfr_fast.data.molecules`, imported on its own.
"""

from bfr_fast.data.augment import RefinerAugmentation, gaussian_blur
from bfr_fast.data.cifar10 import load_cifar10
from bfr_fast.data.conversion import from_uint8, to_uint8
from bfr_fast.data.dataset import UNLABELLED, ImageDataset, stratified_split
from bfr_fast.data.embedded import digits, mnist5k
from bfr_fast.data.image_folder import load_image_folder
from bfr_fast.data.loader import InfiniteLoader
from bfr_fast.data.mnist_idx import load_idx_mnist
from bfr_fast.data.npz import load_npz
from bfr_fast.data.registry import DATASET_DESCRIPTIONS, DATASETS, VALIDATION_SUFFIX, load_dataset

__all__ = [
    "DATASETS",
    "VALIDATION_SUFFIX",
    "DATASET_DESCRIPTIONS",
    "UNLABELLED",
    "ImageDataset",
    "InfiniteLoader",
    "RefinerAugmentation",
    "digits",
    "from_uint8",
    "gaussian_blur",
    "load_cifar10",
    "load_dataset",
    "load_idx_mnist",
    "load_image_folder",
    "load_npz",
    "mnist5k",
    "stratified_split",
    "to_uint8",
]
