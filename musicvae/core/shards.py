"""Work split into shards for Airflow's mapped tasks.

A stage's plan writes each shard's input to object storage under the run's prefix and returns
small descriptors (index, key, size), which travel through XCom; a mapped task reads its
shard's input and writes its output beside it; the stage's last task reads every output back in
shard order. A retried shard rewrites only its own output, and a missing output stops the last
task before it writes anything.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

from musicvae.core.errors import ShardMissingError
from musicvae.core.storage import ObjectStore


def run_prefix(stage: str, run_id: str) -> str:
    return f"{stage}/{re.sub(r'[^A-Za-z0-9._-]', '_', run_id)}"


def split(store: ObjectStore, prefix: str, items: Iterable, size: int, **fields) -> list[dict]:
    """Write `items` in shards of `size` (at least one shard, maybe empty), holding one shard at
    a time; their descriptors carry `fields` too."""
    shards: list[dict] = []
    items = iter(items)
    while True:
        part = list(itertools.islice(items, size))
        if shards and not part:
            return shards
        key = f"{prefix}/shard-{len(shards):05d}"
        store.put_json(f"{key}.json", {**fields, "items": part})
        shards.append({**fields, "index": len(shards), "key": key, "n_items": len(part)})
        if len(part) < size:
            return shards


def inputs(store: ObjectStore, shard: dict) -> list:
    return store.get_json(f"{shard['key']}.json")["items"]


def output_key(shard: dict, suffix: str) -> str:
    return f"{shard['key']}.{suffix}"


def ordered(store: ObjectStore, shards: list[dict], suffix: str) -> list[dict]:
    """The shards by index, once each has its output; else ShardMissingError."""
    shards = sorted(shards, key=lambda s: s["index"])
    for shard in shards:
        if not store.exists(output_key(shard, suffix)):
            raise ShardMissingError(
                f"shard {shard['index']} has no output ({output_key(shard, suffix)}): its task "
                "has not finished. Clear that task in Airflow, or rerun the run."
            )
    return shards


def discard(store: ObjectStore, prefix: str) -> None:
    """Remove a run's shards once its last task has written what they held: they are scratch.
    (Clearing that task alone afterwards then fails with ShardMissingError; rerun the run.)"""
    for key in list(store.list_keys(prefix + "/")):
        store.remove(key)
