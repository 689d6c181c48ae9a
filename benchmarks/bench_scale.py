"""The recluster at catalogue scale: a million tracks whose embeddings are already computed.

    python -m benchmarks.bench_scale [--tracks 1000000] [--dim 32] [--clusters 8]

A fresh database on the local stack gets `tracks` valid tracks and a champion model version;
their embeddings (clustered Gaussians) are written as the recluster's embedding shards would
leave them (MUSICVAE_EMBED_SHARD_SIZE tracks each, in object storage). Then `run_recluster` runs
twice on those shards, as catalogue_recluster's last task does: the first run clusters from
scratch with model version 1; the second, as after next week's retrain, clusters version 2's
embeddings (shifted) anchored to the first run, keeping its cluster ids. Each is timed whole
(reading the shards, MiniBatchKMeans on a sample above MUSICVAE_MINIBATCH_ABOVE tracks, stable
ids, cluster summaries, and one transaction that COPYs every embedding and assignment and builds
the HNSW index) in a process of its own, whose peak memory is the reduce's. Every catalogue size
given is run, so that the peaks show whether the reduce's memory grows with the catalogue.
Target: under 10 minutes a run. Figures go to benchmarks/results/scale.json under "recluster"
(the largest catalogue, and the peak of every size).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from benchmarks.bench_features import log_to_console, machine_info
from benchmarks.bench_sql import synthetic
from musicvae.catalogue.recluster import run_recluster
from musicvae.catalogue.shards import minibatch_size, prefix
from musicvae.core import db
from musicvae.core.config import embed_shard_size, minibatch_above, shard_size
from musicvae.core.shards import output_key, split
from musicvae.core.storage import ObjectStore
from musicvae.local.stack import Stack

log = logging.getLogger("benchmarks.scale")
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "scale.json"
TARGET_S = 10 * 60
GENRES = ("Pop", "Rock", "Jazz", "Electronic", "Classical", "Hip-Hop", "Country", "Blues")


def catalogue(settings, labels: np.ndarray) -> list[dict]:
    """Valid tracks (a genre per Gaussian, so the run's NMI means something) and a champion;
    returns the tracks as the recluster's shards hold them."""
    tracks = [
        {
            "track_id": f"bench/T{i:07d}",
            "audio_key": None,
            "audio_sha256": None,
            "lyrics_key": None,
            "lyrics_sha256": None,
            "genre": GENRES[label % len(GENRES)],
            "quadrant": f"Q{label % 4 + 1}",
        }
        for i, label in enumerate(labels.tolist())
    ]
    with db.engine(settings.database_url).begin() as conn:
        conn.execute(sa.text("INSERT INTO ingest_runs (run_id, landing) VALUES ('b', 'bench')"))
        db.copy_rows(
            conn,
            "tracks",
            ("track_id", "subset", "song_id", "genre", "quadrant", "status", "ingest_run_id"),
            (
                (t["track_id"], "bench", t["track_id"][7:], t["genre"], t["quadrant"], "valid", "b")
                for t in tracks
            ),
        )
    return tracks


def champion(settings, n_tracks: int, seed: int) -> int:
    """A new model version, made champion (its embeddings are the shards' synthetic ones)."""
    with db.engine(settings.database_url).begin() as conn:
        version = conn.execute(
            sa.text(
                "INSERT INTO model_versions (snapshot_id, n_tracks, params, params_hash, "
                "code_version, artifact_prefix) VALUES ('bench', :n, CAST(:p AS jsonb), :h, "
                "'bench', 'bench') RETURNING version"
            ),
            {"n": n_tracks, "p": json.dumps({"n_clusters": len(GENRES), "seed": seed}), "h": seed},
        ).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO model_aliases (alias, version, reason) VALUES ('champion', :v, "
                "'bench') ON CONFLICT (alias) DO UPDATE SET version = EXCLUDED.version"
            ),
            {"v": version},
        )
    return version


def shards(
    settings, run_id: str, version: int, tracks: list[dict], embeddings: np.ndarray
) -> list[dict]:
    """The embedding shards catalogue_recluster's mapped tasks would leave for `run_id`."""
    store = ObjectStore(settings)
    size = embed_shard_size()
    out = split(store, prefix(run_id), tracks, size, model_version=version)
    for shard in out:
        buf = io.BytesIO()
        np.save(buf, embeddings[shard["index"] * size :][:size], allow_pickle=False)
        store.put_bytes(output_key(shard, "npy"), buf.getvalue())
    log.info("%s: %d embedding shards written", run_id, len(out))
    return out


def reduce(settings, run_id: str, shards: list[dict]) -> dict:
    """catalogue_recluster's last task, timed, with this process's peak memory."""
    log_to_console()
    started = time.perf_counter()
    result = run_recluster(settings, run_id, shards=shards)
    seconds = time.perf_counter() - started
    log.info("%s: %.1f s, %s", run_id, seconds, result.metrics)
    return {
        "seconds": round(seconds, 1),
        "tracks_per_s": round(result.n_tracks / seconds),
        "genre_nmi": result.metrics.get("genre_nmi"),
        "anchored": result.metrics["anchored"],
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> int:
    """This process's peak resident memory since it started (VmHWM, Linux). Not getrusage's
    ru_maxrss, which a spawned process inherits from the parent it was forked from."""
    status = Path("/proc/self/status").read_text()
    kb = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return round(int(kb) / 1024)


def timed_run(settings, run_id: str, shards: list[dict]) -> dict:
    """`reduce` in a fresh process: its peak is the reduce's alone, not this one's catalogue."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(reduce, settings, run_id, shards).result()


@contextmanager
def scale_stack() -> Iterator[Stack]:
    """PostgreSQL and the S3 server (no Airflow) under benchmarks/.cache/stack-scale."""
    stack = Stack(HERE / ".cache" / "stack-scale")
    stack.up(airflow=False)
    try:
        yield stack
    finally:
        stack.down()


def fresh_settings(stack: Stack, prefix: str):
    """The stack's settings for a new, migrated database and a new bucket."""
    name = f"{prefix}_{uuid.uuid4().hex[:6]}"
    settings = replace(
        stack.settings(), database_url=stack.create_database(name), bucket=name.replace("_", "-")
    )
    db.migrate(db.engine(settings.database_url))
    ObjectStore(settings).ensure_bucket()
    return settings


def weekly_runs(stack: Stack, n_tracks: int, dim: int) -> dict:
    """A fresh catalogue of `n_tracks`; a first recluster, then the next champion's, anchored."""
    settings = fresh_settings(stack, "bench_scale")
    embeddings, labels, _ = synthetic(n_tracks, dim, len(GENRES))
    tracks = catalogue(settings, labels)
    runs = {}
    for seed, run_id in enumerate(("first", "second")):
        version = champion(settings, len(tracks), seed)
        moved = embeddings + np.float32(0.1 * seed)  # another model's latent space
        runs[run_id] = timed_run(settings, run_id, shards(settings, run_id, version, tracks, moved))
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracks", type=int, nargs="+", default=[250_000, 1_000_000])
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    log_to_console()
    with scale_stack() as stack:
        by_size = {n: weekly_runs(stack, n, args.dim) for n in sorted(args.tracks)}
    largest = max(by_size)
    runs = by_size[largest]
    report = {
        "machine": machine_info(),
        "tracks": largest,
        "dim": args.dim,
        "shard_size": shard_size(),
        "minibatch_above": minibatch_above(),
        "minibatch": minibatch_size(largest) is not None,
        "first_run": runs["first"],
        "next_champion_anchored": runs["second"],
        "reduce_peak_rss_mb_by_tracks": {
            str(n): max(r["peak_rss_mb"] for r in rs.values()) for n, rs in by_size.items()
        },
        "target_s": TARGET_S,
    }
    out = json.loads(args.out.read_text()) if args.out.exists() else {}
    out["recluster"] = report
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"\nrecluster of {largest:,} tracks (embeddings computed, d={args.dim}):")
    for name, run in (("first run", runs["first"]), ("next champion", runs["second"])):
        verdict = "within" if run["seconds"] <= TARGET_S else "OVER"
        print(
            f"  {name}: {run['seconds']} s ({run['tracks_per_s']:,} tracks/s), "
            f"{verdict} the {TARGET_S // 60}-minute target; genre NMI {run['genre_nmi']}"
        )
    print("peak memory of the reduce's process, by catalogue size:")
    for n, mb in report["reduce_peak_rss_mb_by_tracks"].items():
        print(f"  {int(n):>10,} tracks: {mb:,} MB")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
