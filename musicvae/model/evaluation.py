"""One harness for the clustering comparison: representations x methods x seeds x label sets.

The research code reported each baseline from a different script, on different splits and a
single seed. Here every representation (direct spectral features, PCA, a plain autoencoder, the
hybrid VAE) goes through the same clustering and scoring code, and each number is a mean ± sd
over seeds, so a difference between two rows is a difference between representations or
methods, not between harnesses.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import (
    adjusted_mutual_info_score,
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    normalized_mutual_info_score,
    silhouette_score,
)
from sklearn.mixture import GaussianMixture

from musicvae.model.clustering import anchored_kmeans, purity

log = logging.getLogger("musicvae.model.evaluation")

EXTERNAL = ("nmi", "ami", "ari", "purity")
INTERNAL = ("silhouette", "calinski_harabasz", "davies_bouldin")
METRICS = EXTERNAL + INTERNAL
METHODS = ("kmeans", "agglomerative", "gmm", "hdbscan")
LOWER_IS_BETTER = frozenset({"davies_bouldin"})

# Silhouette is O(N^2) in time and memory; a seeded sample of this size estimates it closely.
SILHOUETTE_SAMPLE = 2000
# Ward linkage and HDBSCAN have no random state: one fit serves every seed of a shared array.
DETERMINISTIC_METHODS = frozenset({"agglomerative", "hdbscan"})


# ---------------------------------------------------------------------------------------------
# Clustering


def hdbscan_min_cluster_size(n_rows: int, n_clusters: int) -> int:
    """A quarter of the size an even split into `n_clusters` would give: smaller real groups
    still count as clusters, while chance groupings of a handful of points stay noise."""
    return max(5, n_rows // (4 * max(1, n_clusters)))


def cluster(x: np.ndarray, method: str, n_clusters: int, seed: int) -> np.ndarray:
    """Cluster labels [N] for the rows of `x`. HDBSCAN ignores `n_clusters` (apart from scaling
    its minimum cluster size) and labels noise -1, which scoring keeps as a group of its own."""
    x = np.asarray(x, dtype=np.float64)
    k = max(1, min(int(n_clusters), len(x)))
    if method == "kmeans":
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
    elif method == "agglomerative":
        labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x)
    elif method == "gmm":
        gmm = GaussianMixture(k, covariance_type="diag", n_init=2, random_state=seed)
        with warnings.catch_warnings():
            # A run that has not converged still gives usable labels; the score tells the rest.
            warnings.simplefilter("ignore", ConvergenceWarning)
            labels = gmm.fit(x).predict(x)
    elif method == "hdbscan":
        size = hdbscan_min_cluster_size(len(x), n_clusters)
        labels = HDBSCAN(min_cluster_size=min(size, max(2, len(x))), copy=True).fit_predict(x)
    else:
        raise ValueError(f"unknown clustering method {method!r}; expected one of {METHODS}")
    return np.asarray(labels, dtype=int)


# ---------------------------------------------------------------------------------------------
# Scoring


def _safe(metric: Callable[[], float]) -> float:
    """A metric's value, or NaN where it is undefined for this input (one cluster, too few
    rows, degenerate geometry): one bad cell must not sink a whole comparison run."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            value = float(metric())
    except (ValueError, ZeroDivisionError, FloatingPointError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _external(predicted: np.ndarray, truth: Sequence[str | None]) -> dict[str, float]:
    keep = [i for i, t in enumerate(truth) if t is not None]
    if len(keep) < 2:
        return dict.fromkeys(EXTERNAL, math.nan)
    t = [str(truth[i]) for i in keep]
    p = predicted[keep]
    return {
        "nmi": _safe(lambda: normalized_mutual_info_score(t, p)),
        "ami": _safe(lambda: adjusted_mutual_info_score(t, p)),
        "ari": _safe(lambda: adjusted_rand_score(t, p)),
        "purity": _safe(lambda: purity(t, p)),
    }


def _internal(x: np.ndarray, predicted: np.ndarray, seed: int) -> dict[str, float]:
    n_groups = len(np.unique(predicted))
    if not 2 <= n_groups <= len(x) - 1:
        return dict.fromkeys(INTERNAL, math.nan)
    sample = SILHOUETTE_SAMPLE if len(x) > SILHOUETTE_SAMPLE else None
    return {
        "silhouette": _safe(
            lambda: silhouette_score(x, predicted, sample_size=sample, random_state=seed)
        ),
        "calinski_harabasz": _safe(lambda: calinski_harabasz_score(x, predicted)),
        "davies_bouldin": _safe(lambda: davies_bouldin_score(x, predicted)),
    }


def score(
    x: np.ndarray, predicted: np.ndarray, truth: Sequence[str | None], seed: int = 0
) -> dict[str, float]:
    """External metrics against `truth` (rows labelled None left out) and internal metrics on
    all rows; NaN for any metric the input leaves undefined. `seed` picks the silhouette sample."""
    x = np.asarray(x, dtype=np.float64)
    predicted = np.asarray(predicted)
    if not len(x) == len(predicted) == len(truth):
        raise ValueError(
            f"x, predicted and truth must have the same rows: {len(x)}, {len(predicted)}, "
            f"{len(truth)}"
        )
    return {**_external(predicted, truth), **_internal(x, predicted, seed)}


# ---------------------------------------------------------------------------------------------
# The comparison


@dataclass
class Result:
    """One row of the results table: a metric's mean ± sd over the seeds that produced it."""

    representation: str
    method: str
    labels: str
    metric: str
    mean: float
    sd: float
    n: int  # number of seeds that produced a finite value


def _per_seed(name: str, rep, seeds: Sequence[int]) -> list[np.ndarray]:
    """The array each seed clusters: one shared array, or the representation's own per seed."""
    if isinstance(rep, np.ndarray):
        return [rep] * len(seeds)
    arrays = [np.asarray(a) for a in rep]
    if len(arrays) != len(seeds):
        raise ValueError(
            f"representation {name!r} has {len(arrays)} per-seed arrays for {len(seeds)} seeds"
        )
    return arrays


def _k_groups(
    labels: dict[str, Sequence[str | None]], n_clusters: int | dict[str, int]
) -> dict[int, list[str]]:
    """Label sets grouped by the number of clusters they ask for: one clustering per group."""
    if isinstance(n_clusters, int):
        return {n_clusters: list(labels)}
    missing = set(labels) - set(n_clusters)
    if missing:
        raise ValueError(f"n_clusters has no entry for label sets {sorted(missing)}")
    groups: dict[int, list[str]] = {}
    for name in labels:
        groups.setdefault(int(n_clusters[name]), []).append(name)
    return groups


def _check_inputs(representations, labels, methods) -> None:
    for rep_methods in (methods or {}).values():
        unknown = set(rep_methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown clustering methods {sorted(unknown)}; use {METHODS}")
    sizes = {name: len(v) for name, v in labels.items()}
    for name, rep in representations.items():
        arrays = [rep] if isinstance(rep, np.ndarray) else rep
        for a in arrays:
            if any(len(a) != n for n in sizes.values()):
                raise ValueError(
                    f"representation {name!r} has {len(a)} rows; label sets have {sizes}"
                )


def _summarise(values: list[float]) -> tuple[float, float, int]:
    finite = np.array([v for v in values if math.isfinite(v)], dtype=np.float64)
    if finite.size == 0:
        return math.nan, math.nan, 0
    sd = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    return float(finite.mean()), sd, int(finite.size)


def _run_method(
    arrays: list[np.ndarray],
    method: str,
    seeds: Sequence[int],
    labels: dict[str, Sequence[str | None]],
    k_groups: dict[int, list[str]],
) -> dict[tuple[str, str], list[float]]:
    """Every seed's value of every (label set, metric) for one representation and method."""
    values: dict[tuple[str, str], list[float]] = {}
    cache: dict[tuple[int, int], dict[str, dict[str, float]]] = {}
    for x, seed in zip(arrays, seeds, strict=True):
        for k, names in k_groups.items():
            key = (id(x), k)
            if method not in DETERMINISTIC_METHODS or key not in cache:
                predicted = cluster(x, method, k, seed)
                cache[key] = {name: score(x, predicted, labels[name], seed) for name in names}
            for name, scores in cache[key].items():
                for metric in METRICS:
                    values.setdefault((name, metric), []).append(scores[metric])
    return values


def evaluate(
    representations: dict[str, np.ndarray | list[np.ndarray]],
    labels: dict[str, Sequence[str | None]],
    n_clusters: int | dict[str, int],
    seeds: Sequence[int] = (0, 1, 2),
    methods: dict[str, Sequence[str]] | None = None,
) -> list[Result]:
    """Cluster each representation with each of its methods (kmeans unless `methods` names
    others) once per seed - and per distinct cluster count when `n_clusters` differs between
    label sets - and score every clustering against every label set it was made for."""
    _check_inputs(representations, labels, methods)
    k_groups = _k_groups(labels, n_clusters)
    results = []
    for rep_name, rep in representations.items():
        arrays = _per_seed(rep_name, rep, seeds)
        for method in (methods or {}).get(rep_name, ("kmeans",)):
            started = time.perf_counter()
            values = _run_method(arrays, method, seeds, labels, k_groups)
            for label_name in labels:
                for metric in METRICS:
                    mean, sd, n = _summarise(values[(label_name, metric)])
                    results.append(Result(rep_name, method, label_name, metric, mean, sd, n))
            log.info(
                "%s + %s: %d seeds x %d label sets in %.1fs",
                rep_name,
                method,
                len(seeds),
                len(labels),
                time.perf_counter() - started,
            )
    return results


def seed_agreement(rep, n_clusters: int, seeds: Sequence[int]) -> float:
    """Mean ARI between the KMeans clusterings of every pair of seeds: 1 when a retrain with
    another seed would give the same clusters. A shared array varies only KMeans' seed; a
    representation with an array per seed (a model trained per seed) varies both."""
    arrays = _per_seed("seed agreement", rep, seeds)
    labels = [cluster(x, "kmeans", n_clusters, seed) for x, seed in zip(arrays, seeds, strict=True)]
    pairs = [
        adjusted_rand_score(labels[i], labels[j])
        for i in range(len(labels))
        for j in range(i + 1, len(labels))
    ]
    return float(np.mean(pairs)) if pairs else math.nan


def anchored_agreement(rep, n_clusters: int, seeds: Sequence[int]) -> float:
    """What a user sees after retraining with another seed: the mean ARI between the first
    seed's KMeans clustering and each other seed's, anchored to it as the recluster anchors a
    run to the previous one (`clustering.anchored_kmeans`)."""
    arrays = _per_seed("anchored agreement", rep, seeds)
    first = cluster(arrays[0], "kmeans", n_clusters, seeds[0])
    values = [
        adjusted_rand_score(first, anchored_kmeans(x, n_clusters, seed, first)[0].labels)
        for x, seed in zip(arrays[1:], seeds[1:], strict=True)
    ]
    return float(np.mean(values)) if values else math.nan


# ---------------------------------------------------------------------------------------------
# Reporting


def results_frame(results: list[Result]) -> pd.DataFrame:
    """One row per Result, columns as in the dataclass."""
    columns = ["representation", "method", "labels", "metric", "mean", "sd", "n"]
    return pd.DataFrame([asdict(r) for r in results], columns=columns)


def format_cell(mean: float, sd: float, metric: str = "") -> str:
    """'0.139 ± 0.004'; Calinski-Harabasz is an unbounded ratio in the tens to thousands, where
    three decimals are noise; a metric no seed could compute shows as 'n/a'."""
    if not math.isfinite(mean):
        return "n/a"
    digits = 1 if metric == "calinski_harabasz" or abs(mean) >= 100 else 3
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def table_rows(
    results: list[Result], labels: str, metrics: Sequence[str]
) -> tuple[list[tuple[str, str]], dict[tuple[str, str, str], Result]]:
    """(representation, method) pairs in first-seen order, and the results for one label set
    keyed by (representation, method, metric). Shared by the text table and the table image."""
    rows: list[tuple[str, str]] = []
    cells: dict[tuple[str, str, str], Result] = {}
    for r in results:
        if r.labels != labels or r.metric not in metrics:
            continue
        if (r.representation, r.method) not in rows:
            rows.append((r.representation, r.method))
        cells[(r.representation, r.method, r.metric)] = r
    return rows, cells


def format_table(
    results: list[Result], labels: str, metrics: Sequence[str] = ("nmi", "ari", "purity")
) -> str:
    """A plain-text table for one label set: one line per representation + method."""
    rows, cells = table_rows(results, labels, metrics)
    n_seeds = max((r.n for r in cells.values()), default=0)
    header = ["representation", "method", *metrics]
    body = [
        [rep, method, *(_cell_text(cells.get((rep, method, m)), m) for m in metrics)]
        for rep, method in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def render(line: list[str]) -> str:
        left = [c.ljust(w) for c, w in zip(line[:2], widths[:2], strict=True)]
        right = [c.rjust(w) for c, w in zip(line[2:], widths[2:], strict=True)]
        return "  ".join(left + right).rstrip()

    title = f"clustering vs {labels} labels (mean ± sd over up to {n_seeds} seeds)"
    rule = "-" * len(render(header))
    return "\n".join([title, render(header), rule, *(render(line) for line in body)])


def _cell_text(result: Result | None, metric: str) -> str:
    return "n/a" if result is None else format_cell(result.mean, result.sd, metric)


def to_json(results: list[Result]) -> list[dict]:
    """Plain dicts for json.dumps; NaN (not valid JSON) becomes None."""
    out = []
    for r in results:
        row = asdict(r)
        for key in ("mean", "sd"):
            if not math.isfinite(row[key]):
                row[key] = None
        out.append(row)
    return out
