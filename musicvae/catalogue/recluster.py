"""catalogue_recluster: embed every valid track with the newest model and cluster the catalogue.

Embeddings, assignments and cluster summaries of one run are written in one transaction, and a
rerun of the same run replaces its own rows: readers see the previous run or this one, whole.

The reduce reads the embedding shards one at a time, three times over: to fit the clusters
(on every row, or above MUSICVAE_MINIBATCH_ABOVE tracks on a uniform sample of that many), to
count what they hold, and to write them. Its memory is bounded by the shard and that sample
size, not by the catalogue.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa

from musicvae.catalogue.churn import cluster_churn
from musicvae.catalogue.shards import embed, minibatch_size, plan, prefix, read
from musicvae.core import bulk, db, lineage
from musicvae.core.config import Settings, index_build_memory, minibatch_above
from musicvae.core.shards import discard
from musicvae.core.storage import ObjectStore
from musicvae.model.clustering import (
    agreement_of,
    anchored_kmeans,
    describe,
    nearest,
    stable_ids,
    uniform_rows,
)
from musicvae.registry import versions

log = logging.getLogger("musicvae.catalogue.recluster")


@dataclass
class ReclusterResult:
    run_id: str
    model_version: int
    n_tracks: int
    n_clusters: int
    metrics: dict
    clusters: dict

    def as_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "model_version": self.model_version,
            "n_tracks": self.n_tracks,
            "n_clusters": self.n_clusters,
            "metrics": self.metrics,
        }


def vector_literal(v: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in np.asarray(v).tolist()) + "]"


@dataclass
class _Previous:
    """The latest other recluster run: its id and its clusters' sizes (None, {} when none)."""

    run_id: str | None
    sizes: dict[int, int]

    def clusters(self, conn, track_ids: list[str]) -> np.ndarray:
        """Each track's cluster in this run, -1 where it had none."""
        if self.run_id is None:
            return np.full(len(track_ids), -1)
        where = dict(
            conn.execute(
                sa.text(
                    "SELECT track_id, cluster_id FROM cluster_assignments "
                    "WHERE run_id = :p AND track_id = ANY(:ids)"
                ),
                {"p": self.run_id, "ids": track_ids},
            ).all()
        )
        return np.array([where.get(t, -1) for t in track_ids], dtype=int)


@dataclass
class _Counts:
    """What the run's clusters (0..k-1 until `renamed`) hold, counted shard by shard: their
    sizes, and tracks per (previous cluster, cluster), (genre, cluster) and (quadrant, cluster)."""

    sizes: Counter = field(default_factory=Counter)
    flows: Counter = field(default_factory=Counter)
    genres: Counter = field(default_factory=Counter)
    quadrants: Counter = field(default_factory=Counter)

    def add(self, tracks: list[dict], labels: np.ndarray, previous: np.ndarray) -> None:
        labels = labels.tolist()
        self.sizes.update(labels)
        self.flows.update((p, c) for p, c in zip(previous.tolist(), labels, strict=True) if p >= 0)
        self.genres.update(zip((t["genre"] for t in tracks), labels, strict=True))
        self.quadrants.update(zip((t["quadrant"] for t in tracks), labels, strict=True))

    def renamed(self, ids: np.ndarray) -> _Counts:
        """The same counts under the run's stable cluster ids."""

        def rename(pairs: Counter) -> Counter:
            return Counter({(x, int(ids[c])): n for (x, c), n in pairs.items()})

        return _Counts(
            Counter({int(ids[c]): n for c, n in self.sizes.items()}),
            rename(self.flows),
            rename(self.genres),
            rename(self.quadrants),
        )


def run_recluster(
    settings: Settings,
    run_id: str,
    model_version: int | None = None,
    shards: list[dict] | None = None,
) -> ReclusterResult:
    """Cluster the catalogue from the embedded `shards` (the DAG's mapped tasks), or plan and
    embed them here first (one process: the CLI and tests)."""
    if shards is None:
        shards = [embed(settings, s) for s in plan(settings, run_id, model_version)]
    store = ObjectStore(settings)
    eng = db.engine(settings.database_url)  # migrated by plan
    with eng.connect() as conn:
        mv = versions.get(conn, shards[0]["model_version"])
        previous = _previous_run(conn, run_id)
        centroids, anchored = _fit(conn, store, shards, mv.params, previous)
        counts = _Counts()
        for tracks, embeddings in read(store, shards):
            labels, _ = nearest(embeddings, centroids)
            counts.add(tracks, labels, previous.clusters(conn, [t["track_id"] for t in tracks]))
    ids = stable_ids(counts.flows, counts.sizes, previous.sizes)
    counts = counts.renamed(ids)
    summaries = describe(counts.genres, counts.quadrants)
    metrics = {
        **{f"genre_{k}": v for k, v in agreement_of(counts.genres).items()},
        **{f"quadrant_{k}": v for k, v in agreement_of(counts.quadrants).items()},
        "anchored": anchored,
    }
    changes = None
    if previous.run_id:
        changes = {
            "previous_run_id": previous.run_id,
            **cluster_churn(counts.flows, previous.sizes.keys(), counts.sizes.keys()),
        }
    n_tracks = sum(counts.sizes.values())
    centroids = dict(zip(ids.tolist(), centroids, strict=True))
    _write(eng, store, shards, run_id, mv.version, centroids, summaries, metrics, changes)
    discard(store, prefix(run_id))
    lineage.read(
        lineage.objects(settings, prefix(run_id)), lineage.table(settings, "cluster_assignments")
    )
    lineage.wrote(
        *lineage.tables(
            settings,
            "cluster_runs",
            "clusters",
            "cluster_assignments",
            "track_embeddings",
            *(("cluster_run_changes",) if changes else ()),
        )
    )
    lineage.facts(model_version=mv.version, snapshot_id=mv.snapshot_id)
    log.info(
        "recluster %s: %d tracks into %d clusters with model version %d; %s",
        run_id,
        n_tracks,
        len(summaries),
        mv.version,
        metrics,
    )
    return ReclusterResult(run_id, mv.version, n_tracks, len(summaries), metrics, summaries)


def _fit(
    conn, store: ObjectStore, shards: list[dict], params: dict, previous: _Previous
) -> tuple[np.ndarray, bool]:
    """The run's centroids [k, d], and whether those anchored to the previous run were kept.

    KMeans on every row; above minibatch_above() tracks, MiniBatchKMeans on a uniform sample of
    that many rows (drawn with the run's seed), so that the reduce never holds the catalogue.
    """
    seed = params.get("seed", 0)
    n = sum(s["n_items"] for s in shards)
    cap = minibatch_above()
    sample = uniform_rows(n, cap, seed)
    rows, anchor, start = [], [], 0
    for tracks, embeddings in read(store, shards):
        keep = np.arange(len(tracks))
        if sample is not None:
            lo, hi = np.searchsorted(sample, [start, start + len(tracks)])
            keep = sample[lo:hi] - start
        start += len(tracks)
        rows.append(embeddings[keep])
        anchor.append(previous.clusters(conn, [tracks[i]["track_id"] for i in keep]))
    if sample is not None:
        log.info("clustering a sample of %d of %d tracks", cap, n)
    clustering, anchored = anchored_kmeans(
        np.concatenate(rows),
        params.get("n_clusters", 8),
        seed,
        np.concatenate(anchor) if previous.run_id else None,
        batch_size=minibatch_size(n),
    )
    return clustering.centroids, anchored


def build_hnsw_index(conn, version: int, dim: int) -> None:
    """The cosine HNSW index of one model version's embeddings, used by similar_tracks().

    One index per version, on a cast expression: versions differ in width, and an index needs a
    fixed dimension. It is built on the version's partition, or as a partial index on the
    default partition where the version's rows are there. ef_construction 128 (pgvector's
    default is 64) buys recall at build time.
    """
    version, dim = int(version), int(dim)
    partition = conn.execute(
        sa.text("SELECT to_regclass(track_embeddings_partition(:v))::text"), {"v": version}
    ).scalar()
    where = "" if partition else f" WHERE model_version = {version}"
    # pgvector builds the graph in memory while it fits maintenance_work_mem (64 MB by default:
    # a few hundred thousand 32-d vectors); past that it builds on disk, many times slower.
    conn.exec_driver_sql(f"SET LOCAL maintenance_work_mem = '{index_build_memory()}'")
    conn.exec_driver_sql(
        f"CREATE INDEX IF NOT EXISTS track_embeddings_hnsw_v{version} "
        f"ON {partition or 'track_embeddings_default'} "
        f"USING hnsw ((embedding::vector({dim})) vector_cosine_ops) "
        f"WITH (m = 16, ef_construction = 128){where}"
    )


def embeddings_table(conn, version: int) -> str:
    """Where this version's embeddings are COPYed: on its first run a table of its own, made in
    the caller's transaction, which attach_embeddings() makes the version's partition of
    track_embeddings; otherwise track_embeddings itself."""
    made = conn.execute(
        sa.text("SELECT track_embeddings_load_table(:v)"), {"v": int(version)}
    ).scalar()
    return made or "track_embeddings"


def write_embeddings(
    conn, table: str, version: int, run_id: str, track_ids: list[str], embeddings: np.ndarray
) -> None:
    """COPY embeddings into `table`; into track_embeddings they replace the version's rows for
    these tracks (one embedding per track and model version)."""
    if table == "track_embeddings":
        conn.execute(
            sa.text(
                "DELETE FROM track_embeddings WHERE model_version = :v AND track_id = ANY(:ids)"
            ),
            {"v": version, "ids": track_ids},
        )
    bulk.copy(
        conn,
        table,
        ("track_id", "model_version", "run_id", "embedding"),
        bulk.embedding_rows(track_ids, version, run_id, embeddings),
        freeze=table != "track_embeddings",
    )


def attach_embeddings(conn, table: str, version: int) -> None:
    """Key and foreign keys of the version's own table, each checked once over all its rows,
    then the table becomes the version's partition."""
    if table != "track_embeddings":
        conn.execute(sa.text("SELECT track_embeddings_attach(:v)"), {"v": int(version)})


def assignments_table(conn, run_id: str) -> str:
    """Where this run's assignments are COPYed: a table of the run's own, made in the caller's
    transaction, which attach_assignments() makes the run's partition of cluster_assignments;
    or, for a rerun whose partition exists, cluster_assignments itself."""
    made = conn.execute(
        sa.text("SELECT cluster_assignments_load_table(:r)"), {"r": run_id}
    ).scalar()
    return made or "cluster_assignments"


def write_assignments(
    conn,
    table: str,
    run_id: str,
    track_ids: list[str],
    cluster_ids: np.ndarray,
    distances: np.ndarray,
    assigned_by: str | None = None,
) -> None:
    """COPY assignments into `table`; assigned_by defaults to 'recluster' (the column's default)."""
    columns = ("run_id", "track_id", "cluster_id", "distance")
    bulk.copy(
        conn,
        table,
        columns if assigned_by is None else (*columns, "assigned_by"),
        bulk.assignment_rows(run_id, track_ids, cluster_ids, distances, assigned_by),
        # Rows COPYed into a table made in the same transaction can be stored frozen.
        freeze=table != "cluster_assignments",
    )


def attach_assignments(conn, table: str, run_id: str) -> None:
    """Key and foreign keys of the run's own table, each checked once over all its rows, then
    the table becomes the run's partition. Attaching briefly locks the default partition, so
    it is the last statement of the run's transaction."""
    if table != "cluster_assignments":
        conn.execute(sa.text("SELECT cluster_assignments_attach(:r)"), {"r": run_id})


def _previous_run(conn, run_id: str) -> _Previous:
    previous = conn.execute(
        sa.text(
            "SELECT run_id FROM cluster_runs WHERE run_id <> :r "
            "ORDER BY created_at DESC, run_id DESC LIMIT 1"
        ),
        {"r": run_id},
    ).scalar()
    sizes = conn.execute(
        sa.text(
            "SELECT cluster_id, count(*) FROM cluster_assignments WHERE run_id = :p "
            "GROUP BY cluster_id"
        ),
        {"p": previous},
    ).all()
    return _Previous(previous, dict(sizes))


def _write(
    eng: sa.Engine,
    store: ObjectStore,
    shards: list[dict],
    run_id: str,
    version: int,
    centroids: dict[int, np.ndarray],
    summaries: dict,
    metrics: dict,
    changes: dict | None,
) -> None:
    """The run in one transaction; its embeddings and assignments are COPYed shard by shard."""
    ids = np.array(list(centroids))
    vectors = np.stack(list(centroids.values()))
    with eng.begin() as conn:
        # Cascades to this run's clusters, assignments and embeddings, and nothing else.
        conn.execute(sa.text("DELETE FROM cluster_runs WHERE run_id = :r"), {"r": run_id})
        conn.execute(
            sa.text(
                "INSERT INTO cluster_runs (run_id, model_version, n_clusters, n_tracks, metrics) "
                "VALUES (:r, :v, :k, :n, CAST(:m AS jsonb))"
            ),
            {
                "r": run_id,
                "v": version,
                "k": len(summaries),
                "n": sum(s["size"] for s in summaries.values()),
                "m": json.dumps(metrics),
            },
        )
        conn.execute(
            sa.text(
                "INSERT INTO clusters (run_id, cluster_id, size, label, top_genres, top_quadrants, "
                "centroid) VALUES (:r, :c, :size, :label, CAST(:g AS jsonb), CAST(:q AS jsonb), "
                "CAST(:centroid AS vector))"
            ),
            [
                {
                    "r": run_id,
                    "c": c,
                    "size": s["size"],
                    "label": s["label"],
                    "g": json.dumps(s["top_genres"]),
                    "q": json.dumps(s["top_quadrants"]),
                    "centroid": vector_literal(centroids[c]),
                }
                for c, s in summaries.items()
            ],
        )
        # COPY, not row-by-row INSERT: a catalogue-wide run writes every track's rows at once.
        embeddings_to = embeddings_table(conn, version)
        assignments_to = assignments_table(conn, run_id)
        for tracks, embeddings in read(store, shards):
            track_ids = [t["track_id"] for t in tracks]
            labels, distances = nearest(embeddings, vectors)
            write_embeddings(conn, embeddings_to, version, run_id, track_ids, embeddings)
            write_assignments(conn, assignments_to, run_id, track_ids, ids[labels], distances)
        attach_embeddings(conn, embeddings_to, version)
        if changes:
            _write_changes(conn, run_id, changes)
        build_hnsw_index(conn, version, int(vectors.shape[1]))
        attach_assignments(conn, assignments_to, run_id)


def _write_changes(conn, run_id: str, changes: dict) -> None:
    row = {"r": run_id, **changes}
    for key in ("splits", "merges", "flows"):
        row[key] = json.dumps(changes[key])
    conn.execute(
        sa.text(
            "INSERT INTO cluster_run_changes (run_id, previous_run_id, tracks_compared, "
            "tracks_moved, share_moved, ari, born, died, splits, merges, flows) VALUES (:r, "
            ":previous_run_id, :tracks_compared, :tracks_moved, :share_moved, :ari, :born, "
            ":died, CAST(:splits AS jsonb), CAST(:merges AS jsonb), CAST(:flows AS jsonb))"
        ),
        row,
    )
