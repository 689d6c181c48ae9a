"""The batch as validation's last task reads it: shard by shard, each track's copies of other
tracks marked, keeping of the whole batch only its counts, the columns the suites and the drift
check read, and the tracks the report lists."""

from __future__ import annotations

import heapq
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import sqlalchemy as sa

from musicvae.core.shards import inputs, output_key
from musicvae.core.storage import ObjectStore
from musicvae.quality import data_drift
from musicvae.quality.profiles import TrackCheck

if TYPE_CHECKING:
    from musicvae.quality.validate import ValidationResult

# A track whose audio (or lyrics) is byte for byte that of another track under another id is the
# copy when that other track was validated before, or is new too but was seen first (then: has
# the smaller track id). The original keeps its status. One join per kind, so that each is an
# index lookup per track of the shard.
_COPIES = """
SELECT t.track_id, '{kind}' AS kind, min(o.track_id) AS other
FROM tracks t
JOIN tracks o ON o.track_id <> t.track_id
    AND (o.status <> 'new' OR (o.first_seen, o.track_id) < (t.first_seen, t.track_id))
WHERE t.track_id = ANY(:ids) AND t.status = 'new'
    AND t.{kind}_key IS NOT NULL AND o.{kind}_sha256 = t.{kind}_sha256
    AND o.{song} IS DISTINCT FROM t.{song}
GROUP BY t.track_id
"""
DUPLICATES = sa.text(
    " UNION ALL ".join(
        _COPIES.format(kind=kind, song=song)
        for kind, song in (("audio", "audio_song"), ("lyrics", "lyric_song"))
    )
    + " ORDER BY 1, 2"
)

# The columns of each track the run keeps while it reads the shards: what the profile suite and
# the drift check read. The rest of a profile is written shard by shard.
FRAME_NUMERIC = ("sample_rate", *data_drift.FEATURES)
FRAME_COLUMNS = (
    "track_id",
    "audio_decodable",
    "digital_silence",
    "lyrics_bom",
    "pairing",
    "expected_pairing",
    "duplicate_of",
    *FRAME_NUMERIC,
)
# The report lists this many tracks, quarantined first; track_issues holds every one.
REPORT_TRACKS = 1000


def find_copies(conn, store: ObjectStore, shards: list[dict]) -> dict[str, list[tuple]]:
    """The batch's copies of other tracks: track id -> [(kind, original)], looked up shard by
    shard, once, so that both reads of the shards mark the same tracks."""
    found: dict[str, list[tuple]] = {}
    for shard in shards:
        ids = [r["track_id"] for r in inputs(store, shard)]
        for track_id, kind, other in conn.execute(DUPLICATES, {"ids": ids}):
            found.setdefault(track_id, []).append((kind, other))
    return found


def checked(store: ObjectStore, shards: list[dict], duplicates: dict) -> Iterator[Shard]:
    """Each shard's tracks and their checks, copies marked, one shard at a time."""
    for shard in shards:
        checks = [TrackCheck(**c) for c in store.get_json(output_key(shard, "checks.json"))]
        for check in checks:
            for kind, other in duplicates.get(check.track_id, ()):
                check.profile["duplicate_of"] = other
                check.error(f"{kind}_duplicate", f"same {kind} content as {other}")
        yield Shard(inputs(store, shard), checks)


@dataclass
class Shard:
    rows: list[dict]
    checks: list[TrackCheck]


@dataclass
class Batch:
    """What the run keeps of the whole batch: its subsets, the suites' columns of every track
    (`profiles`, and which are `valid`) and the tracks the report lists."""

    subsets: set[str]
    profiles: pd.DataFrame
    valid: np.ndarray
    listed: list[TrackCheck]

    @classmethod
    def read(cls, shards: Iterator[Shard], result: ValidationResult) -> Batch:
        """Read the shards, counting their tracks into `result`."""
        subsets, frames, valid, listed = set(), [], [], []
        for shard in shards:
            subsets |= {r["subset"] for r in shard.rows}
            frames.append(profile_frame(shard.checks))
            valid.append(np.array([c.valid for c in shard.checks], dtype=bool))
            listed = heapq.nsmallest(
                REPORT_TRACKS, listed + shard.checks, key=lambda c: (c.valid, c.track_id)
            )
            count(result, shard.checks)
        return cls(subsets, pd.concat(frames, ignore_index=True), np.concatenate(valid), listed)


def count(result: ValidationResult, checks: list[TrackCheck]) -> None:
    result.tracks_checked += len(checks)
    result.tracks_valid += sum(c.valid for c in checks)
    result.tracks_quarantined = result.tracks_checked - result.tracks_valid
    result.tracks_profiled += sum(bool(c.profile.get("profiled")) for c in checks)
    for c in checks:
        for name, severity, _ in c.issues:
            result.reasons[f"{severity}:{name}"] = result.reasons.get(f"{severity}:{name}", 0) + 1


def profile_frame(checks: list[TrackCheck]) -> pd.DataFrame:
    """The suites' columns of these tracks (FRAME_COLUMNS), numbers as floats."""
    frame = pd.DataFrame(
        [{"track_id": c.track_id, **c.profile} for c in checks], columns=list(FRAME_COLUMNS)
    )
    frame[list(FRAME_NUMERIC)] = frame[list(FRAME_NUMERIC)].apply(pd.to_numeric, errors="coerce")
    for column in ("pairing", "expected_pairing"):
        # A few distinct values, each parsed into its own string per track: share them.
        frame[column] = frame[column].map(lambda v: sys.intern(v) if isinstance(v, str) else v)
    return frame


def metadata_frame(conn, subset: str, columns: list[str]) -> pd.DataFrame:
    """Every track of the subset, as its metadata row was read ('' counts as missing), in the
    `columns` a suite reads; a column that no row has stays missing, as the suite must see."""
    present = set(
        conn.execute(
            sa.text("SELECT DISTINCT jsonb_object_keys(metadata) FROM tracks WHERE subset = :s"),
            {"s": subset},
        ).scalars()
    )
    keys = [c for c in columns if c in present and c != "song_id"]
    picked = "".join(f", metadata ->> :k{i}" for i in range(len(keys)))
    rows = conn.execute(
        sa.text(f"SELECT song_id{picked} FROM tracks WHERE subset = :s ORDER BY song_id"),
        {"s": subset, **{f"k{i}": key for i, key in enumerate(keys)}},
    ).all()
    return pd.DataFrame(rows, columns=["song_id", *keys]).replace({"": None})
