"""How far a new model version's latent space moved from the champion's, on the same tracks.

Two views that do not need the spaces to be aligned (each retrain's latent axes are arbitrary):
- kNN overlap: for each track, the share of its k nearest neighbours (cosine) both spaces agree
  on, averaged; what a user of `similar_tracks()` sees change.
- linear CKA (Kornblith et al., 2019): similarity of the two spaces' Gram structure, invariant to
  rotation and isotropic scaling; 1 for the same space.
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

KNN = 10


def knn_overlap(a: np.ndarray, b: np.ndarray, k: int = KNN) -> float:
    """Mean share of each row's k nearest neighbours (itself excluded) shared by a and b."""
    k = min(k, len(a) - 1)
    if k < 1:
        raise ValueError("kNN overlap needs at least two tracks")
    near_a, near_b = (
        NearestNeighbors(n_neighbors=k, metric="cosine").fit(x).kneighbors(return_distance=False)
        for x in (a, b)
    )
    shared = [len(set(ra) & set(rb)) for ra, rb in zip(near_a, near_b, strict=True)]
    return float(np.mean(shared)) / k


def linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64) - np.mean(a, axis=0)
    b = np.asarray(b, np.float64) - np.mean(b, axis=0)
    cross = np.linalg.norm(a.T @ b) ** 2
    return float(cross / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)))


def embedding_drift(new: np.ndarray, old: np.ndarray, against_version: int) -> dict:
    """The figures stored with a model version (metrics->'drift')."""
    return {
        "against_version": against_version,
        "tracks": len(new),
        f"knn_overlap_at_{KNN}": round(knn_overlap(new, old), 4),
        "linear_cka": round(linear_cka(new, old), 4),
    }
