"""Clustering the latent space and describing the clusters in words people recognise."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.special import comb
from scipy.stats import entropy
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import mutual_info_score, pairwise_distances_argmin_min


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


def uniform_rows(n: int, size: int, seed: int) -> np.ndarray | None:
    """Sorted indices of a uniform sample of `size` of `n` rows, drawn with `seed`; None when
    `size` covers them all. Sorted, so that the sample can be read in one pass, in order."""
    if n <= size:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def nearest(embeddings: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's nearest centroid and its distance to it (what KMeans' labels_ hold)."""
    labels, distances = pairwise_distances_argmin_min(embeddings, centroids)
    return labels.astype(int), distances.astype(np.float32)


def _table(pairs: Mapping[tuple, int]) -> np.ndarray:
    """The contingency table (reference x cluster) of counted (reference, cluster) pairs."""
    rows = {r: i for i, r in enumerate(sorted({r for r, _ in pairs}, key=str))}
    cols = {c: i for i, c in enumerate(sorted({c for _, c in pairs}, key=str))}
    table = np.zeros((len(rows), len(cols)), np.int64)
    for (r, c), n in pairs.items():
        table[rows[r], cols[c]] += n
    return table


def _pairs(truth: list, labels: np.ndarray) -> Counter:
    return Counter(zip(truth, np.asarray(labels).tolist(), strict=True))


def adjusted_rand(pairs: Mapping[tuple, int]) -> float:
    """The ARI of two labellings given as counts of their (label, label) pairs: sklearn's
    adjusted_rand_score without holding a label per row."""
    return _adjusted_rand(_table(pairs))


def _adjusted_rand(table: np.ndarray) -> float:
    together = comb(table, 2).sum()
    rows, cols = comb(table.sum(axis=1), 2).sum(), comb(table.sum(axis=0), 2).sum()
    expected = rows * cols / comb(table.sum(), 2) if table.sum() > 1 else 0.0
    best = (rows + cols) / 2
    if best == expected:  # both labellings put every row alone, or all rows together
        return 1.0
    return float((together - expected) / (best - expected))


def agreement_of(pairs: Mapping[tuple, int]) -> dict[str, float]:
    """NMI (arithmetic normalisation, as sklearn's default), ARI and purity of a clustering
    against reference labels, from counts of (reference, cluster) pairs; a None reference is
    left out."""
    pairs = {(r, c): n for (r, c), n in pairs.items() if r is not None and n}
    if sum(pairs.values()) < 2:
        return {}
    table = _table(pairs)
    if table.shape[0] == table.shape[1] == 1:
        nmi = 1.0
    else:
        mi = mutual_info_score(None, None, contingency=table)
        mean_entropy = (entropy(table.sum(axis=1)) + entropy(table.sum(axis=0))) / 2
        nmi = float(mi / mean_entropy) if mi > 0 else 0.0
    return {
        "nmi": round(nmi, 4),
        "ari": round(_adjusted_rand(table), 4),
        "purity": round(_purity(table), 4),
    }


def agreement(truth: list, labels: np.ndarray) -> dict[str, float]:
    """NMI, ARI and purity of a clustering against reference labels (rows with a label only)."""
    return agreement_of(_pairs(truth, labels))


def _purity(table: np.ndarray) -> float:
    return float(table.max(axis=0).sum() / table.sum())


def purity(truth: list, labels: np.ndarray) -> float:
    """Share of rows whose cluster's majority label is their own label."""
    return _purity(_table(_pairs(truth, labels)))


def describe(genres: Counter, quadrants: Counter, top: int = 3) -> dict[int, dict]:
    """Per cluster, from counts of (genre, cluster) and (quadrant, cluster) pairs: size, top
    genres and quadrants with counts, and a label from the top genres."""
    out = {}
    for c in sorted({c for _, c in genres}):
        g = Counter({name or "(no genre)": n for (name, k), n in genres.items() if k == c})
        q = Counter({name or "?": n for (name, k), n in quadrants.items() if k == c})
        top_genres = g.most_common(top)
        out[c] = {
            "size": int(sum(g.values())),
            "top_genres": dict(top_genres),
            "top_quadrants": dict(q.most_common(4)),
            "label": " / ".join(name for name, _ in top_genres[:2]),
        }
    return out


def stable_ids(
    flows: Mapping[tuple[int, int], int], sizes: Mapping[int, int], previous: Mapping[int, int]
) -> np.ndarray:
    """Ids for this run's clusters 0..k-1 that keep the previous run's ids where they can.

    `flows` counts the tracks of each (previous cluster id, this run's cluster) pair, `sizes`
    this run's clusters and `previous` the previous run's. Clusters are matched by member
    overlap (Hungarian assignment on 1 - Jaccard), which works across model versions whose
    latent spaces, and so centroids, are not comparable. A new cluster that matches nothing
    gets an id never used by the previous run.
    """
    from scipy.optimize import linear_sum_assignment

    k = max(sizes) + 1 if sizes else 0
    if not previous:
        return np.arange(k)
    old_ids = sorted(previous)
    cost = np.ones((k, len(old_ids)))
    for j, o in enumerate(old_ids):
        for c in range(k):
            shared = flows.get((o, c), 0)
            cost[c, j] = 1 - shared / max(sizes.get(c, 0) + previous[o] - shared, 1)
    mapping = {}
    for row, col in zip(*linear_sum_assignment(cost), strict=True):
        if cost[row, col] < 1:  # no shared member: not the same cluster
            mapping[row] = old_ids[col]
    fresh = iter(range(max(old_ids) + 1, max(old_ids) + 1 + k))
    return np.array([mapping[c] if c in mapping else next(fresh) for c in range(k)])
