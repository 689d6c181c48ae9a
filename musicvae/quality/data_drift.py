"""Is the new data like the data the champion was trained on?

Two views, each against the champion:
- feature drift (merge_validate): every profile feature of the batch's valid tracks against the
  same feature over the champion's training snapshot: population stability index and a
  two-sample Kolmogorov-Smirnov test;
- out-of-distribution share (catalogue_assign): the share of the batch's tracks whose embedding
  lies farther from its nearest cluster centre than nearly all of the champion's own tracks do.

Both land in one `drift_runs` row per validation run; the limits are in data_quality.toml.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

import numpy as np
import sqlalchemy as sa

from musicvae.quality.thresholds import Thresholds

log = logging.getLogger("musicvae.quality.data_drift")

FEATURES = (
    "duration_s",
    "rms_dbfs",
    "peak",
    "clipped_fraction",
    "leading_silence_s",
    "trailing_silence_s",
    "lyrics_words",
    "lyrics_chars",
    "lyrics_garbage_ratio",
)
# An empty bin on one side would make the PSI infinite; this is the usual floor.
_EMPTY_BIN = 1e-4


@dataclass(frozen=True)
class FeatureShift:
    psi: float
    ks: float
    p_value: float
    n_reference: int
    n_batch: int
    drifted: bool


@dataclass
class DriftCheck:
    model_version: int
    snapshot_id: str
    reference_tracks: int
    batch_tracks: int
    features: dict[str, FeatureShift]

    @property
    def drifted_features(self) -> list[str]:
        return [name for name, shift in self.features.items() if shift.drifted]


def psi(reference: np.ndarray, batch: np.ndarray, bins: int) -> float:
    """Population stability index of `batch` against `reference`, over quantile bins of the two
    pooled: a batch beyond the reference's range, or off a value the reference always takes
    (a fixed clip length), gets bins of its own. Tied quantiles merge into one edge."""
    pooled = np.concatenate([reference, batch])
    edges = np.unique(np.quantile(pooled, np.linspace(0, 1, bins + 1)[1:-1]))

    def shares(x: np.ndarray) -> np.ndarray:
        counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)
        return np.clip(counts / len(x), _EMPTY_BIN, None)

    ref, new = shares(reference), shares(batch)
    return float(np.sum((new - ref) * np.log(new / ref)))


def compare(
    reference: dict[str, list], batch: dict[str, list], limits: Thresholds
) -> dict[str, FeatureShift]:
    """Each feature both sides have enough values of: how far the batch moved, and whether that
    is drift by the limits. Values are per track; None (no lyrics, say) is left out."""
    from scipy.stats import ks_2samp

    columns = {}
    for name in FEATURES:
        ref, new = (_values(side.get(name, ())) for side in (reference, batch))
        if min(len(ref), len(new)) >= limits.min_drift_tracks:
            columns[name] = (ref, new)
    shifts = {}
    for name, (ref, new) in columns.items():
        ks = ks_2samp(ref, new)
        # About 5 values a bin at least: finer bins on a small batch measure only noise.
        index = psi(ref, new, max(2, min(limits.psi_bins, min(len(ref), len(new)) // 5)))
        shifts[name] = FeatureShift(
            psi=round(index, 4),
            ks=round(float(ks.statistic), 4),
            p_value=float(ks.pvalue),
            n_reference=len(ref),
            n_batch=len(new),
            drifted=bool(
                index > limits.max_psi and ks.pvalue < limits.max_ks_pvalue / len(columns)
            ),
        )
    return shifts


def _values(values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)  # None becomes NaN
    return array[np.isfinite(array)]


# -- merge_validate: the batch's profiles against the champion's snapshot ------------------------


def check_batch(conn, store, run_id: str, limits: Thresholds) -> DriftCheck | None:
    """Feature drift of the valid tracks validation run `run_id` staged (musicvae.quality.staging);
    None before there is a champion."""
    from musicvae.registry import versions
    from musicvae.registry.snapshots import load_snapshot

    champion = versions.champion(conn, required=False)
    if champion is None:
        return None
    batch = read_features(conn, _staged_valid(), {"r": run_id})
    tracks = len(batch[FEATURES[0]])
    if not tracks:
        return None
    ids = [t["track_id"] for t in load_snapshot(store, champion.snapshot_id)]
    reference = read_features(conn, _REFERENCE, {"ids": ids})
    return DriftCheck(
        model_version=champion.version,
        snapshot_id=champion.snapshot_id,
        reference_tracks=len(reference[FEATURES[0]]),
        batch_tracks=tracks,
        features=compare(reference, batch, limits),
    )


def _staged_valid() -> sa.TextClause:
    """The features of a run's staged valid tracks."""
    from musicvae.quality.staging import TABLE  # staging reads FEATURES from here

    return sa.text(f"SELECT {', '.join(FEATURES)} FROM {TABLE} WHERE run_id = :r AND valid")


# The features of the champion's tracks, as numbers (a profile's non-number is missing).
_REFERENCE = sa.text(
    "SELECT "
    + ", ".join(
        f"CASE WHEN jsonb_typeof(profile -> '{name}') = 'number' "
        f"THEN (profile ->> '{name}')::float8 END"
        for name in FEATURES
    )
    + " FROM track_profiles WHERE track_id = ANY(:ids)"
)


def read_features(conn, query, params: dict) -> dict[str, np.ndarray]:
    """Each of FEATURES as float64 values (NaN where missing), from a `query` that selects them
    in that order; rows are fetched a chunk at a time, so only the numbers are held."""
    result = conn.execution_options(yield_per=20_000).execute(query, params)
    parts = [np.array([tuple(r) for r in rows], dtype=np.float64) for rows in result.partitions()]
    values = np.concatenate(parts) if parts else np.empty((0, len(FEATURES)))
    return {name: values[:, i] for i, name in enumerate(FEATURES)}


def write_check(conn, run_id: str, check: DriftCheck) -> None:
    """The run's row, replaced whole on a rerun (the OOD share is measured again by assign)."""
    conn.execute(
        sa.text(
            "INSERT INTO drift_runs (run_id, model_version, snapshot_id, reference_tracks, "
            "batch_tracks, features, drifted_features, drifted) VALUES (:r, :v, :s, :ref, :n, "
            "CAST(:f AS jsonb), :names, :drifted) ON CONFLICT (run_id) DO UPDATE SET "
            "checked_at = now(), model_version = EXCLUDED.model_version, "
            "snapshot_id = EXCLUDED.snapshot_id, reference_tracks = EXCLUDED.reference_tracks, "
            "batch_tracks = EXCLUDED.batch_tracks, features = EXCLUDED.features, "
            "drifted_features = EXCLUDED.drifted_features, drifted = EXCLUDED.drifted, "
            "cluster_run_id = NULL, ood_threshold = NULL, ood_tracks = NULL, ood_share = NULL"
        ),
        {
            "r": run_id,
            "v": check.model_version,
            "s": check.snapshot_id,
            "ref": check.reference_tracks,
            "n": check.batch_tracks,
            "f": json.dumps({name: asdict(s) for name, s in check.features.items()}),
            "names": check.drifted_features,
            "drifted": bool(check.drifted_features),
        },
    )


# -- catalogue_assign: how far from the clusters the batch's tracks land -------------------------


def ood_threshold(conn, cluster_run_id: str, quantile: float) -> tuple[float, int] | None:
    """The distance to its centre that all but (1 - quantile) of the run's own tracks stay under,
    and how many tracks that is measured on."""
    distances = conn.execute(
        sa.text(
            "SELECT distance FROM cluster_assignments WHERE run_id = :r "
            "AND assigned_by = 'recluster'"
        ),
        {"r": cluster_run_id},
    ).scalars()
    distances = np.fromiter(distances, dtype=np.float64)
    return (float(np.quantile(distances, quantile)), len(distances)) if len(distances) else None


def chance_of_ood(far: int, batch: int, reference: int, quantile: float) -> float:
    """The probability that `far` or more of `batch` tracks like the champion's own pass the
    threshold by chance (a binomial tail). Measured on `reference` tracks the threshold is no
    finer than their order statistics: a new track passes it with probability 1 / (reference + 1)
    or more, so on a small catalogue a few tracks beyond it are noise, not drift."""
    from scipy.stats import binom

    rate = max(1.0 - quantile, 1.0 / (reference + 1))
    return float(binom.sf(far - 1, batch, rate))


def record_ood(
    conn, cluster_run_id: str, track_ids: list[str], distances: np.ndarray, limits: Thresholds
) -> dict[str, float]:
    """Out-of-distribution share of each validation run the tracks came from; {run: share}."""
    measured = ood_threshold(conn, cluster_run_id, limits.ood_quantile)
    if measured is None:
        return {}
    threshold, reference = measured
    runs = dict(
        conn.execute(
            sa.text(
                "SELECT t.track_id, t.validate_run_id FROM tracks t JOIN drift_runs d "
                "ON d.run_id = t.validate_run_id WHERE t.track_id = ANY(:ids)"
            ),
            {"ids": track_ids},
        ).all()
    )
    far = dict(zip(track_ids, np.asarray(distances) > threshold, strict=True))
    shares = {}
    for run_id in sorted(set(runs.values())):
        flags = [far[t] for t, r in runs.items() if r == run_id]
        far_tracks = int(sum(flags))
        shares[run_id] = far_tracks / len(flags)
        chance = chance_of_ood(far_tracks, len(flags), reference, limits.ood_quantile)
        drifted = shares[run_id] > limits.max_ood_share and chance < limits.max_ood_pvalue
        conn.execute(
            sa.text(
                "UPDATE drift_runs SET cluster_run_id = :c, ood_threshold = :t, "
                "ood_tracks = :n, ood_share = :s, "
                "drifted = cardinality(drifted_features) > 0 OR :drifted WHERE run_id = :r"
            ),
            {
                "c": cluster_run_id,
                "t": threshold,
                "n": far_tracks,
                "s": shares[run_id],
                "drifted": drifted,
                "r": run_id,
            },
        )
        if drifted:
            log.warning(
                "data drift: %d of the %d tracks of validation run %s lie farther from every "
                "cluster centre than %.0f%% of the champion's tracks (%.0f%% > %.0f%%; by "
                "chance p = %.2g)",
                far_tracks,
                len(flags),
                run_id,
                limits.ood_quantile * 100,
                shares[run_id] * 100,
                limits.max_ood_share * 100,
                chance,
            )
    return shares
