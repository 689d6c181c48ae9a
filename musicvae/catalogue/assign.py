"""catalogue_assign: newly validated tracks join the nearest existing cluster, without retraining.

Between weekly retrains, tracks that pass validation are embedded with the champion and
assigned to the closest centroid of the latest recluster run, so the catalogue never waits.
The next recluster run re-derives every assignment. How far from the centres they land tells
whether the new data is like the champion's (the out-of-distribution share in drift_runs).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

import numpy as np
import sqlalchemy as sa

from musicvae.catalogue.recluster import write_assignments, write_embeddings
from musicvae.core import db, lineage
from musicvae.core.config import Settings
from musicvae.core.storage import ObjectStore
from musicvae.quality import data_drift, thresholds
from musicvae.registry import versions
from musicvae.registry.embedding import embed_tracks, embedding_inputs
from musicvae.registry.snapshots import valid_tracks

log = logging.getLogger("musicvae.catalogue.assign")


@dataclass
class AssignResult:
    assigned: int
    run_id: str | None = None
    model_version: int | None = None
    reason: str = ""
    ood_share: dict[str, float] | None = None  # per validation run the tracks came from

    def as_dict(self) -> dict:
        return asdict(self)


def nearest(embeddings: np.ndarray, centroids: dict[int, np.ndarray]) -> tuple[np.ndarray, ...]:
    """(cluster id, Euclidean distance) of the closest centroid for every row, as KMeans does."""
    ids = np.array(sorted(centroids))
    matrix = np.stack([centroids[i] for i in ids])
    distances = np.linalg.norm(embeddings[:, None, :] - matrix[None, :, :], axis=2)
    best = distances.argmin(axis=1)
    return ids[best], distances[np.arange(len(best)), best]


def assign_new_tracks(settings: Settings) -> AssignResult:
    limits = thresholds.load()
    eng = db.engine(settings.database_url)
    db.migrate(eng)
    with eng.connect() as conn:
        champion = versions.champion(conn, required=False)
        if champion is None:
            return AssignResult(0, reason="no champion model yet; the first retrain clusters all")
        run_id = conn.execute(
            sa.text(
                "SELECT run_id FROM cluster_runs WHERE model_version = :v "
                "ORDER BY created_at DESC, run_id DESC LIMIT 1"
            ),
            {"v": champion.version},
        ).scalar()
        if run_id is None:
            return AssignResult(0, reason="the champion has not clustered the catalogue yet")
        tracks = valid_tracks(conn, unassigned_in_run=run_id)
        centroids = {
            c: np.array(json.loads(v), dtype=np.float32)
            for c, v in conn.execute(
                sa.text("SELECT cluster_id, centroid::text FROM clusters WHERE run_id = :r"),
                {"r": run_id},
            )
        }
    if not tracks:
        return AssignResult(0, run_id, champion.version, "no new valid tracks")

    model = versions.load(ObjectStore(settings), champion)
    embeddings = embed_tracks(ObjectStore(settings), model, tracks)
    cluster_ids, distances = nearest(embeddings, centroids)
    track_ids = [t["track_id"] for t in tracks]
    with eng.begin() as conn:
        write_embeddings(conn, "track_embeddings", champion.version, run_id, track_ids, embeddings)
        # Into the partitioned table: the rows join the run's partition (or the default one).
        write_assignments(
            conn, "cluster_assignments", run_id, track_ids, cluster_ids, distances, "incremental"
        )
        conn.execute(
            sa.text(
                "UPDATE clusters c SET size = (SELECT count(*) FROM cluster_assignments a "
                "WHERE a.run_id = c.run_id AND a.cluster_id = c.cluster_id) WHERE c.run_id = :r"
            ),
            {"r": run_id},
        )
        ood = data_drift.record_ood(conn, run_id, track_ids, distances, limits)
    lineage.read(*embedding_inputs(settings, model), lineage.table(settings, "tracks"))
    lineage.wrote(
        *lineage.tables(
            settings, "track_embeddings", "cluster_assignments", "clusters", "drift_runs"
        )
    )
    lineage.facts(model_version=champion.version, snapshot_id=champion.snapshot_id)
    log.info(
        "assigned %d new tracks to the clusters of run %s (model version %d)",
        len(tracks),
        run_id,
        champion.version,
    )
    return AssignResult(len(tracks), run_id, champion.version, "assigned", ood)
