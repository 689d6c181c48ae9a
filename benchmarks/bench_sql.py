"""The catalogue database at scale: bulk writes, HNSW build, nearest-neighbour latency and recall.

    python -m benchmarks.bench_sql [--rows 1000000] [--dim 32] [--queries 200] [--writes-only]

Writes `rows` synthetic tracks with embeddings (clustered Gaussians, so that neighbours mean
something) and cluster assignments through the pipeline's own COPY paths, builds the same HNSW
index recluster builds, then times `similar_tracks()` and checks its answers against exact
search. Figures go to benchmarks/results/sql.json. `--writes-only` stops after the writes (no
index build, no search, no results file): the quick loop when working on the write path.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import uuid
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from musicvae.catalogue.recluster import (
    assignments_table,
    attach_assignments,
    attach_embeddings,
    build_hnsw_index,
    embeddings_table,
    vector_literal,
    write_assignments,
    write_embeddings,
)
from musicvae.core import db
from musicvae.local.stack import Stack

log = logging.getLogger("benchmarks.sql")
CACHE = Path(__file__).resolve().parent / ".cache"
RESULTS = Path(__file__).resolve().parent / "results"
RUN = "bench-run"
WARMUP = 20


def synthetic(rows: int, dim: int, clusters: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32) * 3
    labels = rng.integers(0, clusters, rows)
    return (centres[labels] + rng.normal(size=(rows, dim)).astype(np.float32)), labels, centres


def write(
    eng: sa.Engine, embeddings: np.ndarray, labels: np.ndarray, centres: np.ndarray, chunk: int
) -> dict:
    """Everything a recluster run writes, timed; tracks are setup and not counted."""
    ids = [f"bench/T{i:07d}" for i in range(len(embeddings))]
    with eng.begin() as conn:
        conn.execute(sa.text("INSERT INTO ingest_runs (run_id, landing) VALUES ('b', 'bench')"))
        db.copy_rows(
            conn,
            "tracks",
            ("track_id", "subset", "song_id", "status", "ingest_run_id"),
            ((t, "bench", t[7:], "valid", "b") for t in ids),
        )
        conn.execute(
            sa.text(
                "INSERT INTO model_versions (snapshot_id, n_tracks, params, params_hash, "
                "code_version, artifact_prefix) "
                "VALUES ('bench', :n, '{}', 'bench', 'bench', 'bench')"
            ),
            {"n": len(ids)},
        )
        conn.execute(sa.text("INSERT INTO model_aliases VALUES ('champion', 1, now(), 'bench')"))
    started = time.perf_counter()
    with eng.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO cluster_runs (run_id, model_version, n_clusters, "
                "n_tracks) VALUES (:r, 1, :k, :n)"
            ),
            {"r": RUN, "k": len(centres), "n": len(ids)},
        )
        db.copy_rows(
            conn,
            "clusters",
            ("run_id", "cluster_id", "size", "label", "top_genres", "top_quadrants", "centroid"),
            (
                (RUN, c, int((labels == c).sum()), f"c{c}", "{}", "{}", vector_literal(centres[c]))
                for c in range(len(centres))
            ),
        )
        vectors, table = embeddings_table(conn, 1), assignments_table(conn, RUN)
        for start in range(0, len(ids), chunk):
            part = slice(start, start + chunk)
            write_embeddings(conn, vectors, 1, RUN, ids[part], embeddings[part])
            distances = np.linalg.norm(embeddings[part] - centres[labels[part]], axis=1)
            write_assignments(conn, table, RUN, ids[part], labels[part], distances)
            log.info(
                "wrote %d/%d embeddings + assignments (%.0f rows/s)",
                min(start + chunk, len(ids)),
                len(ids),
                2 * min(start + chunk, len(ids)) / (time.perf_counter() - started),
            )
        attach_embeddings(conn, vectors, 1)
        attach_assignments(conn, table, RUN)
    seconds = time.perf_counter() - started
    return {
        "rows_written": 2 * len(ids),
        "seconds": round(seconds, 2),
        "rows_per_s": round(2 * len(ids) / seconds),
    }


def build_index(eng: sa.Engine, dim: int) -> float:
    started = time.perf_counter()
    with eng.begin() as conn:
        conn.exec_driver_sql("SET maintenance_work_mem = '2GB'")
        conn.exec_driver_sql("SET max_parallel_maintenance_workers = 2")
        build_hnsw_index(conn, 1, dim)
        conn.exec_driver_sql("ANALYZE track_embeddings")
    return time.perf_counter() - started


def query(eng: sa.Engine, embeddings: np.ndarray, n: int, seed: int = 1) -> dict:
    """similar_tracks() as users call it (its own ef_search), against exact cosine search."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(embeddings), n, replace=False)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    latencies, recalls = [], []
    with eng.connect() as conn:
        # Steady state: the first queries after the build read the index from disk.
        for i in rng.choice(len(embeddings), WARMUP, replace=False):
            conn.execute(
                sa.text("SELECT track_id FROM similar_tracks(:t, 10)"), {"t": f"bench/T{i:07d}"}
            ).all()
        for i in picks:
            started = time.perf_counter()
            found = (
                conn.execute(
                    sa.text("SELECT track_id FROM similar_tracks(:t, 10)"), {"t": f"bench/T{i:07d}"}
                )
                .scalars()
                .all()
            )
            latencies.append((time.perf_counter() - started) * 1000)
            distance = 1 - unit @ unit[i]
            distance[i] = np.inf
            exact = {f"bench/T{j:07d}" for j in np.argpartition(distance, 10)[:10]}
            recalls.append(len(exact & set(found)) / 10)
    return {
        "queries": n,
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p95_ms": round(float(np.percentile(latencies, 95)), 2),
        "recall_at_10": round(float(np.mean(recalls)), 4),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--clusters", type=int, default=64)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--chunk", type=int, default=100_000)
    p.add_argument("--out", type=Path, default=RESULTS / "sql.json")
    p.add_argument(
        "--writes-only", action="store_true", help="time the writes only; write no results file"
    )
    args = p.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    # Its own stack: the other benchmarks stop theirs when they finish.
    stack = Stack(CACHE / "stack-sql")
    stack.up(airflow=False)
    try:
        eng = db.engine(stack.create_database(f"bench_sql_{uuid.uuid4().hex[:6]}"))
        db.migrate(eng)
        embeddings, labels, centres = synthetic(args.rows, args.dim, args.clusters)
        writes = write(eng, embeddings, labels, centres, args.chunk)
        log.info("writes: %s", writes)
        if args.writes_only:
            return
        index_s = build_index(eng, args.dim)
        log.info("HNSW index built in %.1f s", index_s)
        search = query(eng, embeddings, args.queries)
    finally:
        stack.down()
    report = {
        "rows": args.rows,
        "dim": args.dim,
        "writes": writes,
        "hnsw_build_s": round(index_s, 1),
        "search": search,
    }
    print(f"\n{args.rows:,} embeddings (d={args.dim}) with assignments")
    print(
        f"  COPY writes: {writes['rows_per_s']:,} rows/s ({writes['rows_written']:,} rows in "
        f"{writes['seconds']} s, one transaction)"
    )
    print(f"  HNSW build:  {index_s:.1f} s")
    print(
        f"  10-NN through similar_tracks(): p50 {search['p50_ms']} ms, p95 {search['p95_ms']} "
        f"ms, recall@10 {search['recall_at_10']} against exact search"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
