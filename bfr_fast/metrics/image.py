"""Image metrics on extractor features: Fréchet distance, KID, Inception Score, sFID, precision/recall.

All of them take features (``(N, D)`` arrays or tensors) so that they work on any extractor's output;
:func:`evaluate_images` runs an extractor and computes the lot. With the Inception extractor these are FID,
KID, IS and sFID; with a local classifier they are distances in that classifier's feature space and are
labelled so (:func:`metric_label`).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy import linalg
from scipy.special import log_softmax

from bfr_fast.checks import choice, integer, positive_int
from bfr_fast.metrics.extractor import FeatureExtractor, ImageFeatures
from bfr_fast.metrics.inception import INCEPTION_NAME

ArrayLike = np.ndarray | torch.Tensor


PRECISION_RECALL_K = 3
"""k of the k-NN manifolds of precision and recall (Kynkäänniemi et al.); each set needs more than k samples."""


def _as_features(feats: ArrayLike, argument: str, min_rows: int = 1) -> np.ndarray:
    """``feats`` as a finite float64 ``(N, D)`` array, or ValueError naming ``argument``."""
    if isinstance(feats, torch.Tensor):
        feats = feats.detach().cpu().double().numpy()
    array = np.asarray(feats, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{argument} must be a 2-D (N, D) feature array, got shape {array.shape}")
    if array.shape[0] < min_rows:
        raise ValueError(f"{argument} must have at least {min_rows} rows, got {array.shape[0]}")
    if not np.isfinite(array).all():
        raise ValueError(f"{argument} contains NaN or infinite values")
    return array


def _check_same_dim(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same feature dimension, got {a.shape[1]} and {b.shape[1]}"
        )


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    """``scipy.linalg.sqrtm`` without its "Matrix is singular" warning.

    A singular covariance product is routine (a feature that never varies, fewer samples than dimensions), and
    the reference implementations silence that warning (``sqrtm(..., disp=False)``) and judge the root by its
    finiteness alone, as :func:`frechet_distance` does; the warning would only scare a user off a right number.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        return linalg.sqrtm(matrix)


def frechet_distance(feats_a: ArrayLike, feats_b: ArrayLike, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (clean-fid's formula).

    d² = ‖μ_a − μ_b‖² + Tr(Σ_a) + Tr(Σ_b) − 2 Tr((Σ_a Σ_b)^{1/2}),
    with the unbiased sample covariances. When the matrix square root is not finite, ``eps`` is added to both
    diagonals first; a small imaginary part of the root (numerical error) is dropped.

    Args:
        feats_a: ``(N, D)`` features, N ≥ 2.
        feats_b: ``(M, D)`` features, M ≥ 2.
        eps: diagonal offset used only when the product is singular.

    Returns:
        The squared Fréchet distance (what is reported as FID), a float.
    """
    a = _as_features(feats_a, "feats_a", min_rows=2)
    b = _as_features(feats_b, "feats_b", min_rows=2)
    _check_same_dim(a, b, "feats_a", "feats_b")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    sigma_a, sigma_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = _sqrtm(sigma_a @ sigma_b)
    if not np.isfinite(covmean).all():
        warnings.warn(
            f"singular covariance product in the Fréchet distance; adding {eps} to the diagonals", stacklevel=2
        )
        offset = np.eye(sigma_a.shape[0]) * eps
        covmean = _sqrtm((sigma_a + offset) @ (sigma_b + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Fréchet distance: imaginary component {np.abs(covmean.imag).max():g} in sqrtm")
        covmean = covmean.real
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * np.trace(covmean))


def kernel_inception_distance(
    feats_a: ArrayLike,
    feats_b: ArrayLike,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> float:
    """Kernel distance (KID): unbiased MMD² with the cubic polynomial kernel, averaged over random subsets.

    k(x, y) = (xᵀy / D + 1)³. For each of ``num_subsets`` draws of m = min(N, M, subset_size) rows from each
    set without replacement,
    MMD² = Σ_{i≠j} [k(x_i, x_j) + k(y_i, y_j)] / (m (m − 1)) − 2 Σ_{i,j} k(x_i, y_j) / m²;
    the result is the mean over draws (clean-fid's ``kernel_distance``, with a seeded generator).

    Args:
        feats_a: ``(N, D)`` features, N ≥ 2.
        feats_b: ``(M, D)`` features, M ≥ 2.
        num_subsets: number of random subsets.
        subset_size: largest subset size.
        seed: seeds the subset draws.

    Returns:
        The mean MMD² (can be slightly negative: the estimator is unbiased).
    """
    a = _as_features(feats_a, "feats_a", min_rows=2)
    b = _as_features(feats_b, "feats_b", min_rows=2)
    _check_same_dim(a, b, "feats_a", "feats_b")
    positive_int("num_subsets", num_subsets)
    integer("subset_size", subset_size, low=2)
    dim = a.shape[1]
    m = min(a.shape[0], b.shape[0], subset_size)
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = b[rng.choice(b.shape[0], m, replace=False)]
        y = a[rng.choice(a.shape[0], m, replace=False)]
        within = (x @ x.T / dim + 1) ** 3 + (y @ y.T / dim + 1) ** 3
        across = (x @ y.T / dim + 1) ** 3
        total += (within.sum() - np.trace(within)) / (m * (m - 1)) - 2.0 * across.sum() / (m * m)
    return float(total / num_subsets)


def inception_score(logits: ArrayLike, splits: int = 10) -> tuple[float, float]:
    """Inception Score from class logits: exp(E_x KL(p(y|x) ‖ p(y))), mean and std over ``splits`` parts.

    p(y|x) = softmax(logits); p(y) is the mean of p(y|x) within each part (parts are contiguous and differ in
    size by at most one). It ranges from 1 (every image gets the same distribution) to K (each image is
    confidently one class, and the classes are used uniformly).

    Args:
        logits: ``(N, K)`` logits.
        splits: number of parts, 1 ≤ splits ≤ N.

    Returns:
        ``(mean, std)`` of the per-part scores.
    """
    values = _as_features(logits, "logits")
    integer("splits", splits, low=1, high=values.shape[0], why="at most N, the number of logits")
    log_p = log_softmax(values, axis=1)
    scores = []
    for part in np.array_split(log_p, splits):
        p = np.exp(part)
        log_marginal = np.log(p.mean(axis=0))
        kl = (p * (part - log_marginal)).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def _knn_radii(feats: torch.Tensor, k: int, batch_size: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row (the row itself excluded)."""
    radii = []
    for start in range(0, feats.shape[0], batch_size):
        distances = torch.cdist(feats[start : start + batch_size], feats)
        radii.append(torch.kthvalue(distances, k + 1, dim=1).values)  # +1: the zero distance to itself
    return torch.cat(radii)


def _fraction_inside(queries: torch.Tensor, centers: torch.Tensor, radii: torch.Tensor, batch_size: int) -> float:
    """Fraction of ``queries`` within ``radii[j]`` of some ``centers[j]``."""
    inside = 0
    for start in range(0, queries.shape[0], batch_size):
        distances = torch.cdist(queries[start : start + batch_size], centers)
        inside += int((distances <= radii[None, :]).any(dim=1).sum())
    return inside / queries.shape[0]


def precision_recall(
    real_feats: ArrayLike, fake_feats: ArrayLike, k: int = PRECISION_RECALL_K, batch_size: int = 512
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al., 2019) with k-NN manifolds.

    Each set's manifold is the union of balls around its points, of radius the distance to the k-th
    nearest neighbour within the set. Precision = fraction of fake points inside the real manifold;
    recall = fraction of real points inside the fake manifold. Euclidean distances, computed in batches.

    Args:
        real_feats: ``(N, D)`` features of real images, N > k.
        fake_feats: ``(M, D)`` features of generated images, M > k.
        k: the neighbour that sets each radius.
        batch_size: rows per distance block (memory is ``batch_size × max(N, M)``).

    Returns:
        ``(precision, recall)``, each in [0, 1].
    """
    positive_int("k", k)
    real_np = _as_features(real_feats, "real_feats", min_rows=k + 1)
    fake_np = _as_features(fake_feats, "fake_feats", min_rows=k + 1)
    _check_same_dim(real_np, fake_np, "real_feats", "fake_feats")
    real, fake = torch.from_numpy(real_np), torch.from_numpy(fake_np)
    precision = _fraction_inside(fake, real, _knn_radii(real, k, batch_size), batch_size)
    recall = _fraction_inside(real, fake, _knn_radii(fake, k, batch_size), batch_size)
    return precision, recall


def _features_of(images: torch.Tensor | ImageFeatures, extractor: FeatureExtractor, argument: str) -> ImageFeatures:
    if isinstance(images, ImageFeatures):
        if images.extractor != extractor.name:
            raise ValueError(
                f"{argument} holds features from {images.extractor!r}, not from the extractor {extractor.name!r}"
            )
        return images
    return extractor.extract(images)


def evaluate_images(
    generated: torch.Tensor | ImageFeatures,
    reference: torch.Tensor | ImageFeatures,
    extractor: FeatureExtractor,
    *,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
    k: int = PRECISION_RECALL_K,
    seed: int = 0,
) -> dict[str, float | int | str]:
    """All image metrics of ``generated`` against ``reference`` in ``extractor``'s feature space.

    Args:
        generated: ``(N, C, H, W)`` images in [-1, 1], or their :class:`ImageFeatures` from ``extractor``.
        reference: the reference set (held-out real data), images or precomputed features (compute them once
            with ``extractor.extract(reference)`` to score several sample sets against it).
        extractor: the feature extractor.
        kid_subsets: number of KID subsets.
        kid_subset_size: largest KID subset.
        is_splits: Inception Score parts (at most N).
        k: the neighbour of precision/recall.
        seed: seeds the KID subsets.

    Returns:
        ``{"extractor": name, "num_generated", "num_reference", "fd", "kid", "precision", "recall"}``, plus
        ``"is"`` and ``"is_std"`` when the extractor gives logits and ``"sfid"`` when it gives spatial features.
        Label them with :func:`metric_label` (a local extractor's "fd" is "FD-<name>", not FID).
    """
    gen = _features_of(generated, extractor, "generated")
    ref = _features_of(reference, extractor, "reference")
    precision, recall = precision_recall(ref.features, gen.features, k=k)
    metrics: dict[str, float | int | str] = {
        "extractor": extractor.name,
        "num_generated": gen.num_images,
        "num_reference": ref.num_images,
        "fd": frechet_distance(gen.features, ref.features),
        "kid": kernel_inception_distance(gen.features, ref.features, kid_subsets, kid_subset_size, seed),
        "precision": precision,
        "recall": recall,
    }
    if gen.logits is not None:
        metrics["is"], metrics["is_std"] = inception_score(gen.logits, is_splits)
    if gen.spatial is not None and ref.spatial is not None:
        metrics["sfid"] = frechet_distance(gen.spatial, ref.spatial)
    return metrics


_INCEPTION_LABELS = {
    "fd": "FID",
    "kid": "KID",
    "is": "IS",
    "sfid": "sFID",
    "precision": "Precision",
    "recall": "Recall",
}
_LOCAL_LABELS = {"fd": "FD", "kid": "KD", "is": "IS", "sfid": "sFD", "precision": "Precision", "recall": "Recall"}


def metric_label(key: str, extractor_name: str) -> str:
    """How a report names metric ``key`` of :func:`evaluate_images` computed with ``extractor_name``.

    Inception gives the standard names ("FID", "KID", "IS", "sFID"); any other extractor's name is appended
    so its scores are never mistaken for them ("FD-digitsnet", "KD-digitsnet", "IS-digitsnet", "sFD-digitsnet").
    ``"is_std"`` is the IS label followed by " std".
    """
    choice("key", key, sorted([*_INCEPTION_LABELS, "is_std"]))
    base_key = "is" if key == "is_std" else key
    if extractor_name == INCEPTION_NAME:
        label = _INCEPTION_LABELS[base_key]
    else:
        label = f"{_LOCAL_LABELS[base_key]}-{extractor_name}"
    return f"{label} std" if key == "is_std" else label
