"""Clustering the latent space and describing the clusters in words people recognise."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


@dataclass
class Clustering:
    labels: np.ndarray  # [N] cluster id per row
    centroids: np.ndarray  # [k, d]
    distances: np.ndarray  # [N] distance of each row to its own centroid

    @property
    def inertia(self) -> float:
        return float(np.square(self.distances, dtype=np.float64).sum())


def _clustering(model: KMeans | MiniBatchKMeans, embeddings: np.ndarray) -> Clustering:
    labels = model.labels_.astype(int)
    centroids = model.cluster_centers_.astype(np.float32)
    distances = np.linalg.norm(embeddings - centroids[labels], axis=1)
    return Clustering(labels, centroids, distances.astype(np.float32))


def _estimator(k: int, seed: int, batch_size: int | None, init="k-means++"):
    """KMeans, or with `batch_size` MiniBatchKMeans, whose steps see one batch of rows each."""
    n_init = 1 if not isinstance(init, str) else 3 if batch_size else 10
    if batch_size:
        return MiniBatchKMeans(
            n_clusters=k, init=init, n_init=n_init, batch_size=batch_size, random_state=seed
        )
    return KMeans(n_clusters=k, init=init, n_init=n_init, random_state=seed)


def kmeans(
    embeddings: np.ndarray, n_clusters: int, seed: int = 0, batch_size: int | None = None
) -> Clustering:
    k = max(1, min(n_clusters, len(embeddings)))
    return _clustering(_estimator(k, seed, batch_size).fit(embeddings), embeddings)


# A clustering seeded from the previous run's clusters is kept while its within-cluster sum of
# squares is at most this much above a fresh KMeans': a retrain that only moved the latent space
# around leaves the clusters where users know them; a materially better grouping still wins.
ANCHOR_TOLERANCE = 0.05


def anchor_labels(track_ids: list[str], previous: dict[int, set[str]]) -> np.ndarray | None:
    """Each track's cluster in the previous run (`stable_ids`' `previous`), -1 where it had
    none; None when there was no previous run."""
    if not previous:
        return None
    where = {t: c for c, members in previous.items() for t in members}
    return np.array([where.get(t, -1) for t in track_ids])


def anchored_kmeans(
    embeddings: np.ndarray,
    n_clusters: int,
    seed: int,
    anchor: np.ndarray | None,
    tolerance: float = ANCHOR_TOLERANCE,
    batch_size: int | None = None,
) -> tuple[Clustering, bool]:
    """KMeans that keeps the previous run's clusters where the data allows; (clustering, whether
    the anchored one was kept).

    `anchor` gives each row's cluster in the previous run (-1: none, e.g. a new track). Lloyd's
    iterations start from the centres of the previous clusters' members in THIS embedding, so
    they work across model versions whose latent spaces are not comparable. The result is kept
    when its inertia is within `tolerance` of a fresh KMeans' (`kmeans`), which is used otherwise
    and when the previous run had another number of clusters. With `batch_size` both are
    MiniBatchKMeans.
    """
    fresh = kmeans(embeddings, n_clusters, seed, batch_size)
    if anchor is None:
        return fresh, False
    previous = np.unique(anchor[anchor >= 0])
    if len(previous) != len(fresh.centroids):
        return fresh, False
    init = np.stack([embeddings[anchor == c].mean(axis=0) for c in previous])
    model = _estimator(len(previous), seed, batch_size, init).fit(embeddings)
    anchored = _clustering(model, embeddings)
    if anchored.inertia <= (1 + tolerance) * fresh.inertia:
        return anchored, True
    return fresh, False


def purity(truth: list, labels: np.ndarray) -> float:
    """Share of rows whose cluster's majority label is their own label."""
    total = 0
    for c in np.unique(labels):
        members = [t for t, lab in zip(truth, labels, strict=True) if lab == c]
        total += Counter(members).most_common(1)[0][1]
    return total / len(truth)


def agreement(truth: list, labels: np.ndarray) -> dict[str, float]:
    """NMI, ARI and purity of a clustering against reference labels (rows with a label only)."""
    keep = [i for i, t in enumerate(truth) if t is not None]
    if len(keep) < 2:
        return {}
    t = [truth[i] for i in keep]
    lab = labels[keep]
    return {
        "nmi": round(float(normalized_mutual_info_score(t, lab)), 4),
        "ari": round(float(adjusted_rand_score(t, lab)), 4),
        "purity": round(purity(t, lab), 4),
    }


def describe(labels: np.ndarray, genres: list, quadrants: list, top: int = 3) -> dict[int, dict]:
    """Per cluster: size, top genres and quadrants with counts, and a label from the top genres."""
    out = {}
    for c in sorted(np.unique(labels).tolist()):
        idx = np.flatnonzero(labels == c)
        g = Counter(genres[i] or "(no genre)" for i in idx).most_common(top)
        q = Counter(quadrants[i] or "?" for i in idx).most_common(4)
        out[c] = {
            "size": int(idx.size),
            "top_genres": dict(g),
            "top_quadrants": dict(q),
            "label": " / ".join(name for name, _ in g[:2]),
        }
    return out


def stable_ids(
    labels: np.ndarray, track_ids: list[str], previous: dict[int, set[str]] | None
) -> np.ndarray:
    """Ids for this run's clusters that keep the previous run's ids where they can.

    Clusters are matched by member overlap (Hungarian assignment on 1 - Jaccard), which works
    across model versions whose latent spaces, and so centroids, are not comparable. A new
    cluster that matches nothing gets an id never used by the previous run.
    """
    from scipy.optimize import linear_sum_assignment

    k = int(labels.max()) + 1 if len(labels) else 0
    if not previous:
        return np.arange(k)
    members = [{t for t, lab in zip(track_ids, labels, strict=True) if lab == c} for c in range(k)]
    old_ids = sorted(previous)
    cost = np.array(
        [
            [1 - len(m & previous[o]) / max(len(m | previous[o]), 1) for o in old_ids]
            for m in members
        ]
    )
    mapping = {}
    for row, col in zip(*linear_sum_assignment(cost), strict=True):
        if cost[row, col] < 1:  # no shared member: not the same cluster
            mapping[row] = old_ids[col]
    fresh = iter(range(max(old_ids) + 1, max(old_ids) + 1 + k))
    return np.array([mapping[c] if c in mapping else next(fresh) for c in range(k)])
