"""The recluster's embedding pass in shards, so that Airflow can spread it over its workers.

`plan` freezes the run's input (the champion and the valid tracks) in shards; `embed` embeds
one shard and writes its embeddings beside it; `read` gives every shard back in order, one at a
time, so that the recluster never holds more than a shard of the catalogue.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import numpy as np

from musicvae.core import db, lineage
from musicvae.core.config import Settings, embed_shard_size, minibatch_above, shard_size
from musicvae.core.shards import inputs, ordered, output_key, run_prefix, split
from musicvae.core.storage import ObjectStore
from musicvae.registry import versions
from musicvae.registry.embedding import embed_tracks, embedding_inputs
from musicvae.registry.snapshots import stream_valid_tracks

log = logging.getLogger("musicvae.catalogue.shards")


def minibatch_size(n_tracks: int, env: dict[str, str] | None = None) -> int | None:
    """The batch size of MiniBatchKMeans (the shard size) for a catalogue above
    `minibatch_above()` tracks; None: KMeans on every row."""
    return shard_size(env) if n_tracks > minibatch_above(env) else None


def prefix(run_id: str) -> str:
    return run_prefix("recluster", run_id)


def plan(
    settings: Settings, run_id: str, model_version: int | None = None, size: int | None = None
) -> list[dict]:
    """Shard descriptors of this run: the model version and the valid tracks, frozen now."""
    size = size or embed_shard_size()
    store = ObjectStore(settings)
    eng = db.engine(settings.database_url)
    db.migrate(eng)
    with eng.connect() as conn:
        mv = versions.get(conn, model_version) if model_version else versions.champion(conn)
        tracks = stream_valid_tracks(conn, batch=size)
        shards = split(store, prefix(run_id), tracks, size, model_version=mv.version)
    n_tracks = sum(s["n_items"] for s in shards)
    log.info("recluster %s: %d tracks in %d shards of %d", run_id, n_tracks, len(shards), size)
    lineage.read(lineage.table(settings, "tracks"), lineage.table(settings, "model_aliases"))
    lineage.wrote(lineage.objects(settings, prefix(run_id)))
    return shards


def embed(settings: Settings, shard: dict) -> dict:
    """Embed one shard's tracks with the run's model version; returns the descriptor."""
    store = ObjectStore(settings)
    with db.engine(settings.database_url).connect() as conn:
        mv = versions.get(conn, shard["model_version"])
    model = versions.load(store, mv)
    tracks = inputs(store, shard)
    buf = io.BytesIO()
    np.save(buf, embed_tracks(store, model, tracks).astype(np.float32), allow_pickle=False)
    store.put_bytes(output_key(shard, "npy"), buf.getvalue())
    log.info("shard %d: %d tracks embedded", shard["index"], len(tracks))
    # The run's shards are one dataset: the recluster reads them all.
    run_objects = lineage.objects(settings, shard["key"].rsplit("/", 1)[0])
    lineage.read(*embedding_inputs(settings, model), run_objects)
    lineage.wrote(run_objects)
    lineage.facts(model_version=mv.version)
    return shard


def read(store: ObjectStore, shards: list[dict]) -> Iterator[tuple[list[dict], np.ndarray]]:
    """Each shard's tracks and embeddings, in shard order; ShardMissingError before the first
    when any shard has no embeddings."""
    for shard in ordered(store, shards, "npy"):
        yield inputs(store, shard), np.load(io.BytesIO(store.get_bytes(output_key(shard, "npy"))))
