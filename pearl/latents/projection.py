"""2-D projections of the posterior means: PCA (with each posterior's covariance in the plane), t-SNE, UMAP.

Shapes:
    K: tasks, L: latent dim.
"""

from __future__ import annotations

import importlib.util
from typing import NamedTuple

import numpy as np

from pearl.latents.context import LatentError
from pearl.latents.measures import LatentTable

PROJECTIONS = ("pca", "tsne", "umap")
_PACKAGES = {"tsne": ("sklearn", "scikit-learn"), "umap": ("umap", "umap-learn")}


class Projection(NamedTuple):
    """Posterior means in a plane.

    Attributes:
        method: ``pca``, ``tsne`` or ``umap``.
        xy: [K, 2] coordinates.
        labels: the two axis labels.
        cov: [K, 2, 2] each posterior's covariance in the plane, or None for the nonlinear
            projections, where a Gaussian does not map to an ellipse.
    """

    method: str
    xy: np.ndarray
    labels: list[str]
    cov: np.ndarray | None


def pca(z_mean: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Principal axes of the posterior means.

    Returns:
        ``(center [L], axes [2, L], explained [2])``: the first two principal directions (unit
        rows) and the fraction of the variance each explains. With a single latent dim the
        second axis is zero.
    """
    center = z_mean.mean(axis=0)
    _, s, vt = np.linalg.svd(z_mean - center, full_matrices=False)
    var = s**2
    axes, explained = np.zeros((2, z_mean.shape[1])), np.zeros(2)
    k = min(2, len(s))
    axes[:k], explained[:k] = vt[:k], var[:k] / max(var.sum(), 1e-12)
    return center, axes, explained


def check_projection(method: str) -> None:
    """Raise :class:`LatentError` now if ``method`` is unknown or its package is missing."""
    if method not in PROJECTIONS:
        raise LatentError(f"unknown projection {method!r}; choose one of {', '.join(PROJECTIONS)}")
    if method in _PACKAGES and importlib.util.find_spec(_PACKAGES[method][0]) is None:
        raise LatentError(f"projection {method!r} needs {_PACKAGES[method][1]}: pip install {_PACKAGES[method][1]}")


def project(table: LatentTable, method: str = "pca", *, seed: int = 0) -> Projection:
    """2-D coordinates of the posterior means of ``table`` (seeded where the method is random)."""
    check_projection(method)
    if method == "pca":
        center, axes, explained = pca(table.z_mean)
        xy = (table.z_mean - center) @ axes.T
        cov = np.einsum("il,kl,jl->kij", axes, table.z_std**2, axes)  # A diag(std²) Aᵀ per task
        return Projection(method, xy, [f"PC {i + 1} ({100 * e:.0f}% of variance)" for i, e in enumerate(explained)], cov)
    n = len(table)
    if method == "tsne":
        from sklearn.manifold import TSNE

        xy = TSNE(n_components=2, perplexity=max(1.0, min(30.0, (n - 1) / 3)), random_state=seed,
                  init="pca").fit_transform(table.z_mean)
        return Projection(method, xy, ["t-SNE 1", "t-SNE 2"], None)
    import umap

    xy = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, n - 1)).fit_transform(table.z_mean)
    return Projection(method, xy, ["UMAP 1", "UMAP 2"], None)
