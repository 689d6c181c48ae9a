"""The columns the data-quality suites and the drift check read of each track a validation run
checks, staged in PostgreSQL (`validation_staging`) a shard at a time. Great Expectations then
runs its suites in the database over the whole batch, uniqueness across shards included, and
the run's last task holds one shard of tracks, not the batch."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.schema import CreateView, DropView

from musicvae.core.db import copy_rows
from musicvae.quality import data_drift
from musicvae.quality.profiles import TrackCheck

TABLE = "validation_staging"
FLAGS = ("audio_decodable", "digital_silence", "lyrics_bom")
TEXTS = ("pairing", "expected_pairing", "duplicate_of")
NUMBERS = ("sample_rate", *data_drift.FEATURES)
COLUMNS = ("track_id", *FLAGS, *TEXTS, *NUMBERS)  # what the profile suite reads
# Rows an interrupted run left behind that no retry cleared; no run stages for this long.
STALE = "7 days"


def clear(conn, run_id: str) -> None:
    """Remove this run's staged rows, and any left by runs abandoned long ago."""
    conn.execute(
        sa.text(f"DELETE FROM {TABLE} WHERE run_id = :r OR staged_at < now() - interval '{STALE}'"),
        {"r": run_id},
    )


def stage(conn, run_id: str, checks: list[TrackCheck]) -> None:
    """Add these tracks' columns to the run's staged rows (COPY, in the caller's transaction)."""
    copy_rows(conn, TABLE, ("run_id", "valid", *COLUMNS), (_row(run_id, c) for c in checks))


def _row(run_id: str, check: TrackCheck) -> tuple:
    p = check.profile
    return (
        run_id,
        check.valid,
        check.track_id,
        *(p.get(c) if isinstance(p.get(c), bool) else None for c in FLAGS),
        *(p.get(c) for c in TEXTS),
        *(_number(p.get(c)) for c in NUMBERS),
    )


def _number(value) -> float | None:
    """A number as the suites should see it: missing (None, NaN, not a number) is NULL."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def profiles(run_id: str) -> sa.Select:
    """What Great Expectations validates as the run's track profiles."""
    table = sa.table(TABLE, *(sa.column(c) for c in ("run_id", *COLUMNS)))
    return sa.select(*(table.c[c] for c in COLUMNS)).where(table.c.run_id == run_id)


def metadata(conn, subset: str, columns: list[str]) -> sa.Select:
    """What Great Expectations validates as the subset's metadata: every track of the subset,
    as its metadata row was read ('' counts as missing), in the `columns` a suite reads; a
    column that no row has is left out, as the suite must see."""
    present = set(
        conn.execute(
            sa.text("SELECT DISTINCT jsonb_object_keys(metadata) FROM tracks WHERE subset = :s"),
            {"s": subset},
        ).scalars()
    )
    tracks = sa.table("tracks", sa.column("song_id"), sa.column("subset"), sa.column("metadata"))
    picked = [
        sa.func.nullif(tracks.c.metadata.op("->>")(key), "").label(key)
        for key in columns
        if key in present and key != "song_id"
    ]
    return sa.select(tracks.c.song_id, *picked).where(tracks.c.subset == subset)


@contextmanager
def views(
    engine: sa.Engine, run_id: str, selects: dict[str, sa.Select]
) -> Iterator[dict[str, str]]:
    """Each named SELECT as a view of the run's own, {name: view}, dropped on the way out.

    Great Expectations reads a view's columns from the catalog; given a query instead, it runs
    the query once whole to learn them, and the client would hold every row of the batch."""
    prefix = "validation_" + hashlib.sha256(run_id.encode()).hexdigest()[:12]
    made = {
        name: CreateView(select, f"{prefix}_{i}")
        for i, (name, select) in enumerate(selects.items())
    }
    try:
        with engine.begin() as conn:
            for view in made.values():
                conn.execute(DropView(view.table, if_exists=True))  # an interrupted try's
                conn.execute(view)
        yield {name: view.table.name for name, view in made.items()}
    finally:
        with engine.begin() as conn:
            for view in made.values():
                conn.execute(DropView(view.table, if_exists=True))
