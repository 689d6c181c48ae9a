"""Snapshots: the set of valid tracks (and their content hashes) a retrain trains on, frozen in
object storage under an id derived from that set, so the same tracks give the same snapshot."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator

import sqlalchemy as sa

from musicvae.core import db, lineage
from musicvae.core.config import Settings
from musicvae.core.errors import PermanentError
from musicvae.core.storage import ObjectStore

log = logging.getLogger("musicvae.registry.snapshots")

MIN_TRACKS = 8


class NotEnoughDataError(PermanentError):
    """Too few valid tracks to train on: ingest and validate more first."""


SNAPSHOT_COLUMNS = (
    "track_id",
    "audio_key",
    "audio_sha256",
    "lyrics_key",
    "lyrics_sha256",
    "genre",
    "quadrant",
)


def valid_tracks(conn, unassigned_in_run: str | None = None) -> list[dict]:
    """The valid tracks as snapshot rows; only those without an assignment in a given run."""
    return list(stream_valid_tracks(conn, unassigned_in_run))


def stream_valid_tracks(
    conn, unassigned_in_run: str | None = None, batch: int = 5000
) -> Iterator[dict]:
    """valid_tracks, read from a server-side cursor `batch` rows at a time."""
    sql = (
        f"SELECT {', '.join('t.' + c for c in SNAPSHOT_COLUMNS)} FROM tracks t "
        "WHERE t.status = 'valid'"
    )
    if unassigned_in_run:
        sql += (
            " AND NOT EXISTS (SELECT 1 FROM cluster_assignments a "
            "WHERE a.run_id = :r AND a.track_id = t.track_id)"
        )
    rows = conn.execution_options(yield_per=batch).execute(
        sa.text(sql + " ORDER BY t.track_id"), {"r": unassigned_in_run}
    )
    for r in rows:
        yield dict(zip(SNAPSHOT_COLUMNS, r, strict=True))


def take_snapshot(settings: Settings) -> dict:
    """Freeze the set of valid tracks (and their content hashes) that this retrain will use."""
    eng = db.engine(settings.database_url)
    db.migrate(eng)
    with eng.connect() as conn:
        tracks = valid_tracks(conn)
    if len(tracks) < MIN_TRACKS:
        raise NotEnoughDataError(
            f"{len(tracks)} valid tracks; training needs at least {MIN_TRACKS}. Drop a MERGE "
            "download into the landing zone and run merge_ingest first."
        )
    identity = [(t["track_id"], t["audio_sha256"], t["lyrics_sha256"]) for t in tracks]
    snapshot_id = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
    ObjectStore(settings).put_json(snapshot_key(snapshot_id), {"tracks": tracks})
    log.info("snapshot %s: %d valid tracks", snapshot_id, len(tracks))
    lineage.read(lineage.table(settings, "tracks"))
    lineage.wrote(lineage.objects(settings, snapshot_key(snapshot_id)))
    lineage.facts(snapshot_id=snapshot_id)
    return {"snapshot_id": snapshot_id, "n_tracks": len(tracks)}


def snapshot_key(snapshot_id: str) -> str:
    return f"snapshots/{snapshot_id}.json"


def load_snapshot(store: ObjectStore, snapshot_id: str) -> list[dict]:
    return store.get_json(snapshot_key(snapshot_id))["tracks"]
