"""The batch as validation's last task reads it: shard by shard, each track's copies of other
tracks marked, keeping of the whole batch only its counts and the tracks the report lists; the
columns the suites and the drift check read go to the database (musicvae.quality.staging)."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from musicvae.core.shards import inputs, output_key
from musicvae.core.storage import ObjectStore
from musicvae.quality import staging
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
    """What the run keeps of the whole batch: its subsets and the tracks the report lists."""

    subsets: set[str]
    listed: list[TrackCheck]

    @classmethod
    def stage(cls, conn, shards: Iterator[Shard], result: ValidationResult) -> Batch:
        """Read the shards, counting their tracks into `result` and staging their columns for
        the suites (in the caller's transaction, replacing what an earlier try staged)."""
        subsets, listed = set(), []
        staging.clear(conn, result.run_id)
        for shard in shards:
            subsets |= {r["subset"] for r in shard.rows}
            staging.stage(conn, result.run_id, shard.checks)
            listed = heapq.nsmallest(
                REPORT_TRACKS, listed + shard.checks, key=lambda c: (c.valid, c.track_id)
            )
            count(result, shard.checks)
        return cls(subsets, listed)


def count(result: ValidationResult, checks: list[TrackCheck]) -> None:
    result.tracks_checked += len(checks)
    result.tracks_valid += sum(c.valid for c in checks)
    result.tracks_quarantined = result.tracks_checked - result.tracks_valid
    result.tracks_profiled += sum(bool(c.profile.get("profiled")) for c in checks)
    for c in checks:
        for name, severity, _ in c.issues:
            result.reasons[f"{severity}:{name}"] = result.reasons.get(f"{severity}:{name}", 0) + 1
