"""The recluster's embedding pass in shards, so that Airflow can spread it over its workers.

`plan` freezes the run's input (the champion and the valid tracks) and writes each shard's
tracks to object storage; `embed` embeds one shard and writes its embeddings beside them;
`gather` reads every shard back in order. Only the shard descriptors (a few ids and counts)
travel through XCom. A retried shard redoes its own work only, and nothing reaches the catalogue
until the recluster task has every shard.
"""

from __future__ import annotations

import io
import logging
import math
import re

import numpy as np

from musicvae.core import db, lineage
from musicvae.core.config import Settings, minibatch_above, shard_size
from musicvae.core.errors import ShardMissingError
from musicvae.core.storage import ObjectStore
from musicvae.registry import versions
from musicvae.registry.embedding import embed_tracks, embedding_inputs
from musicvae.registry.snapshots import valid_tracks

log = logging.getLogger("musicvae.catalogue.shards")


def minibatch_size(n_tracks: int, env: dict[str, str] | None = None) -> int | None:
    """The batch size of MiniBatchKMeans (the shard size) for a catalogue above
    `minibatch_above()` tracks; None: KMeans on every row."""
    return shard_size(env) if n_tracks > minibatch_above(env) else None


def prefix(run_id: str) -> str:
    return f"recluster/{re.sub(r'[^A-Za-z0-9._-]', '_', run_id)}"


def plan(
    settings: Settings, run_id: str, model_version: int | None = None, size: int | None = None
) -> list[dict]:
    """Shard descriptors of this run: the model version and the valid tracks, frozen now."""
    size = size or shard_size()
    store = ObjectStore(settings)
    eng = db.engine(settings.database_url)
    db.migrate(eng)
    with eng.connect() as conn:
        mv = versions.get(conn, model_version) if model_version else versions.champion(conn)
        tracks = valid_tracks(conn)
    shards = []
    for index in range(max(1, math.ceil(len(tracks) / size))):
        part = tracks[index * size : (index + 1) * size]
        key = f"{prefix(run_id)}/shard-{index:05d}"
        store.put_json(f"{key}.json", {"model_version": mv.version, "tracks": part})
        shards.append(
            {"model_version": mv.version, "index": index, "key": key, "n_tracks": len(part)}
        )
    log.info("recluster %s: %d tracks in %d shards of %d", run_id, len(tracks), len(shards), size)
    lineage.read(lineage.table(settings, "tracks"), lineage.table(settings, "model_aliases"))
    lineage.wrote(lineage.objects(settings, prefix(run_id)))
    return shards


def embed(settings: Settings, shard: dict) -> dict:
    """Embed one shard's tracks with the run's model version; returns the descriptor."""
    store = ObjectStore(settings)
    with db.engine(settings.database_url).connect() as conn:
        mv = versions.get(conn, shard["model_version"])
    model = versions.load(store, mv)
    tracks = store.get_json(f"{shard['key']}.json")["tracks"]
    buf = io.BytesIO()
    np.save(buf, embed_tracks(store, model, tracks).astype(np.float32), allow_pickle=False)
    store.put_bytes(f"{shard['key']}.npy", buf.getvalue())
    log.info("shard %d: %d tracks embedded", shard["index"], len(tracks))
    # The run's shards are one dataset: the recluster reads them all.
    run_objects = lineage.objects(settings, shard["key"].rsplit("/", 1)[0])
    lineage.read(*embedding_inputs(settings, model), run_objects)
    lineage.wrote(run_objects)
    lineage.facts(model_version=mv.version)
    return shard


def gather(store: ObjectStore, shards: list[dict]) -> tuple[list[dict], np.ndarray]:
    """Every shard's tracks and embeddings, in shard order."""
    tracks, parts = [], []
    for shard in sorted(shards, key=lambda s: s["index"]):
        key = f"{shard['key']}.npy"
        if not store.exists(key):
            raise ShardMissingError(
                f"shard {shard['index']} has no embeddings ({key}): its embed task has not "
                "finished. Clear that task in Airflow, or rerun the recluster."
            )
        tracks += store.get_json(f"{shard['key']}.json")["tracks"]
        parts.append(np.load(io.BytesIO(store.get_bytes(key))))
    return tracks, np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
