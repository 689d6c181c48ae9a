"""merge_validate: profile every new track, decide valid or quarantined, publish a report.

Only tracks in status `new` are looked at (ingest resets a track to `new` when its content
changes), so the cost follows the new data, and content profiled before (the same audio in two
MERGE subsets, a retried run) is not decoded again. One bad file quarantines one track, with
reasons; it never stops the batch. What does stop it is a batch-level failure: a critical
expectation (a metadata CSV without a required column, duplicated ids), no valid track at all, or
a collapse of the valid fraction against the previous run. Then no track changes status, the run
is recorded as failed with its reason and report, and BatchValidationError is raised.
"""

from __future__ import annotations

import heapq
import logging
import mimetypes
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import sqlalchemy as sa

from musicvae.core import db, lineage
from musicvae.core.config import Settings, shard_size
from musicvae.core.errors import BatchValidationError
from musicvae.core.shards import discard, inputs, ordered, output_key, run_prefix, split
from musicvae.core.storage import ObjectStore
from musicvae.quality import data_drift, expectations
from musicvae.quality.profiles import AUDIO_FIELDS, LYRICS_FIELDS, TrackCheck, check_track
from musicvae.quality.records import write_run
from musicvae.quality.report import render_report
from musicvae.quality.thresholds import Thresholds, load

log = logging.getLogger("musicvae.quality.validate")


@dataclass
class ValidationResult:
    run_id: str
    tracks_checked: int = 0
    tracks_valid: int = 0
    tracks_quarantined: int = 0
    tracks_profiled: int = 0  # decoded in this run; the rest reused a profile of the same content
    status: str = "passed"
    failure: str | None = None
    report_key: str | None = None
    docs_key: str | None = None
    report_url: str | None = None
    docs_url: str | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    expectations_failed: list[str] = field(default_factory=list)
    drifted_features: list[str] = field(default_factory=list)  # against the champion's snapshot

    @property
    def valid_fraction(self) -> float | None:
        return self.tracks_valid / self.tracks_checked if self.tracks_checked else None

    def as_dict(self) -> dict:
        return {**asdict(self), "valid_fraction": self.valid_fraction}


# -- the run -------------------------------------------------------------------------------------

NEW_TRACKS = sa.text(
    "SELECT track_id, subset, quadrant, audio_key, audio_sha256, lyrics_key, lyrics_sha256 "
    "FROM tracks WHERE status = 'new' ORDER BY track_id"
)

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


def known_profiles(conn, rows, silence_dbfs: float) -> dict:
    """Profiles already computed for this content, keyed by ('audio'|'lyrics', sha256)."""
    known: dict = {}
    for kind, fields in (("audio", AUDIO_FIELDS), ("lyrics", LYRICS_FIELDS)):
        shas = sorted({getattr(r, f"{kind}_sha256") for r in rows if getattr(r, f"{kind}_key")})
        found = conn.execute(
            sa.text(
                f"SELECT DISTINCT ON ({kind}_sha256) {kind}_sha256, profile FROM track_profiles "
                f"WHERE {kind}_sha256 = ANY(:s) AND profile ? '{fields[0]}'"
            ),
            {"s": shas},
        ).all()
        for sha, profile in found:
            # A profile measured with another silence level would not say the same thing.
            if kind == "lyrics" or profile.get("silence_dbfs") == silence_dbfs:
                known[(kind, sha)] = {f: profile.get(f) for f in fields}
    return known


def plan_validation(settings: Settings, run_id: str, size: int | None = None) -> list[dict]:
    """Shard descriptors of this run: the tracks in status `new` now, `size` to a shard."""
    store = ObjectStore(settings)
    eng = db.engine(settings.database_url)
    db.migrate(eng)
    size = size or shard_size()
    with eng.connect() as conn:
        rows = conn.execution_options(yield_per=size).execute(NEW_TRACKS)  # a shard at a time
        shards = split(store, run_prefix("validation", run_id), (r._asdict() for r in rows), size)
    lineage.read(lineage.table(settings, "tracks"))
    lineage.wrote(lineage.objects(settings, run_prefix("validation", run_id)))
    return shards


def profile_shard(settings: Settings, shard: dict, limits: Thresholds | None = None) -> dict:
    """Profile and judge one shard's tracks (decoding is the costly part); returns the shard."""
    limits = limits or load()
    store = ObjectStore(settings)
    rows = [SimpleNamespace(**r) for r in inputs(store, shard)]
    with db.engine(settings.database_url).connect() as conn:
        known = known_profiles(conn, rows, limits.silence_dbfs)
    checks = _profile_all(rows, store, limits, known)
    store.put_json(output_key(shard, "checks.json"), [asdict(c) for c in checks])
    run_objects = lineage.objects(settings, shard["key"].rsplit("/", 1)[0])
    lineage.read(lineage.objects(settings, "raw"), run_objects)
    lineage.wrote(run_objects)
    return shard


def run_validation(
    settings: Settings,
    run_id: str,
    limits: Thresholds | None = None,
    shards: list[dict] | None = None,
) -> ValidationResult:
    """Decide the batch from its profiled `shards` (the DAG's mapped tasks), or plan and
    profile them here first (one process: the CLI and tests).

    The shards are read twice, one at a time: first for the counts, the columns the suites read
    (about 1 KB a track) and the tracks the report lists; then, once the batch is decided, to
    write each track. No more than a shard's whole profiles are held at once."""
    limits = limits or load()
    store = ObjectStore(settings)
    eng = db.engine(settings.database_url)
    # Importing Great Expectations takes seconds: in one process it runs while the tracks are
    # decoded, here while the shards are read.
    gx_import = threading.Thread(target=expectations.import_gx, daemon=True)
    profile_here = shards is None
    if profile_here:
        shards = plan_validation(settings, run_id)
    if any(s["n_items"] for s in shards):  # else no rows: the run returns before it needs GX
        gx_import.start()
    if profile_here:
        shards = [profile_shard(settings, s, limits) for s in shards]
    shards = ordered(store, shards, "checks.json")  # all there, or nothing is decided
    result = ValidationResult(run_id)
    if not any(s["n_items"] for s in shards):
        log.info("validate %s: no new tracks", run_id)
        discard(store, run_prefix("validation", run_id))
        return result

    with eng.connect() as conn:
        duplicates = _duplicates(conn, store, shards)
    batch = _Batch.read(_checked(store, shards, duplicates), result)
    prefix = f"reports/{run_prefix('validation', run_id)}"
    # The suites import GX too: two threads importing it at once can see a module half made.
    gx_import.join()
    with eng.connect() as conn:
        suites = {"track_profiles": (batch.profiles, expectations.profile_suite(limits))}
        for subset in sorted(batch.subsets):
            suite = expectations.metadata_suite(subset, limits)
            suites[f"metadata.{subset}"] = (
                metadata_frame(conn, subset, expectations.columns(suite)),
                suite,
            )
        previous = conn.execute(
            sa.text(
                "SELECT valid_fraction, tracks_checked FROM data_quality_runs "
                "WHERE status = 'passed' AND run_id <> :r AND valid_fraction IS NOT NULL "
                "ORDER BY started_at DESC LIMIT 1"
            ),
            {"r": run_id},
        ).first()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="musicvae-docs-") as docs:
        outcomes = expectations.run_suites(suites, Path(docs))
        result.docs_key = f"{prefix}/docs/index.html"
        uploaded = _upload_folder(store, Path(docs), f"{prefix}/docs")
    log.info(
        "validate: %d expectations checked, Data Docs built and %d files uploaded in %.1f s",
        len(outcomes),
        uploaded,
        time.monotonic() - started,
    )

    failed = [o for o in outcomes if not o.success]
    result.expectations_failed = [o.describe() for o in failed]
    result.failure = batch_failure(result, failed, previous, limits)
    result.status = "failed" if result.failure else "passed"
    drift = None
    if not result.failure:  # a failed batch joins nothing, so it cannot drift anything
        with eng.connect() as conn:
            drift = data_drift.check_batch(conn, store, batch.profiles[batch.valid], limits)
        result.drifted_features = drift.drifted_features if drift else []
    result.report_key = f"{prefix}/index.html"
    result.report_url, result.docs_url = store.url(result.report_key), store.url(result.docs_key)
    store.put_json(
        f"{prefix}/summary.json",
        {**result.as_dict(), "tracks": [asdict(c) for c in batch.listed]},
    )
    store.put_bytes(
        result.report_key,
        render_report(result, batch.listed, outcomes, drift).encode(),
        "text/html; charset=utf-8",
    )
    write_run(eng, result, outcomes, drift, (s.checks for s in _checked(store, shards, duplicates)))
    discard(store, run_prefix("validation", run_id))
    lineage.read(
        lineage.objects(settings, run_prefix("validation", run_id)),
        lineage.table(settings, "tracks"),
    )
    lineage.wrote(
        *lineage.tables(
            settings,
            "track_profiles",
            "track_issues",
            "data_quality_runs",
            "expectation_results",
            # A failed batch changes no track's status and is compared with nothing.
            *(() if result.failure else ("tracks",)),
            *(("drift_runs",) if drift else ()),
        ),
        lineage.objects(settings, prefix),
    )
    lineage.facts(
        data_quality={
            "run_id": run_id,
            "status": result.status,
            "tracks_checked": result.tracks_checked,
            "tracks_valid": result.tracks_valid,
            "valid_fraction": result.valid_fraction,
        }
    )
    log.info(
        "validate %s: %s; %d checked (%d profiled, the rest reused), %d valid, %d quarantined; "
        "report %s; Data Docs %s",
        run_id,
        result.status,
        result.tracks_checked,
        result.tracks_profiled,
        result.tracks_valid,
        result.tracks_quarantined,
        result.report_url,
        result.docs_url,
    )
    for line in result.expectations_failed:
        log.warning("expectation failed: %s", line)
    if result.drifted_features:
        log.warning(
            "data drift: %s of the batch moved away from the training data of model version %d "
            "(report %s)",
            ", ".join(result.drifted_features),
            drift.model_version,
            result.report_url,
        )
    if result.failure:
        raise BatchValidationError(
            f"validation run {run_id} failed as a batch: {result.failure}. No track changed "
            f"status; fix the input (or the thresholds in musicvae/quality/data_quality.toml) and "
            f"ingest again. Report: {result.report_url}"
        )
    return result


def _profile_all(rows, store: ObjectStore, limits: Thresholds, known: dict) -> list[TrackCheck]:
    started = time.monotonic()
    checks: list[TrackCheck] = []
    # Fetching from S3 and decoding MP3 both release the GIL; threads keep both cores busy.
    with ThreadPoolExecutor(max_workers=4) as pool:
        for i, check in enumerate(
            pool.map(lambda r: check_track(r, store, limits, known), rows), 1
        ):
            checks.append(check)
            if i % 200 == 0 or i == len(rows):
                log.info(
                    "validate: %d/%d tracks profiled (%.1f tracks/s)",
                    i,
                    len(rows),
                    i / (time.monotonic() - started),
                )
    return checks


def batch_failure(
    result: ValidationResult, failed: list, previous, limits: Thresholds
) -> str | None:
    """Why this run fails as a whole, or None. Per-track problems never fail a batch."""
    reasons = [o.describe() for o in failed if o.severity == expectations.CRITICAL]
    if result.tracks_checked and not result.tracks_valid:
        reasons.append(f"none of the {result.tracks_checked} tracks checked is valid")
    elif (
        previous is not None
        and min(previous.tracks_checked, result.tracks_checked) >= limits.min_tracks_for_collapse
        and result.valid_fraction < previous.valid_fraction - limits.max_valid_fraction_drop
    ):
        reasons.append(
            f"the valid fraction collapsed from {previous.valid_fraction:.0%} (previous run) to "
            f"{result.valid_fraction:.0%} (more than {limits.max_valid_fraction_drop:.0%} lower)"
        )
    return "; ".join(reasons) or None


def _duplicates(conn, store: ObjectStore, shards: list[dict]) -> dict[str, list[tuple]]:
    """The batch's copies of other tracks: track id -> [(kind, original)], looked up shard by
    shard, once, so that both reads of the shards mark the same tracks."""
    found: dict[str, list[tuple]] = {}
    for shard in shards:
        ids = [r["track_id"] for r in inputs(store, shard)]
        for track_id, kind, other in conn.execute(DUPLICATES, {"ids": ids}):
            found.setdefault(track_id, []).append((kind, other))
    return found


def _checked(store: ObjectStore, shards: list[dict], duplicates: dict) -> Iterator[_Shard]:
    """Each shard's tracks and their checks, copies marked, one shard at a time."""
    for shard in shards:
        checks = [TrackCheck(**c) for c in store.get_json(output_key(shard, "checks.json"))]
        for check in checks:
            for kind, other in duplicates.get(check.track_id, ()):
                check.profile["duplicate_of"] = other
                check.error(f"{kind}_duplicate", f"same {kind} content as {other}")
        yield _Shard(inputs(store, shard), checks)


@dataclass
class _Shard:
    rows: list[dict]
    checks: list[TrackCheck]


@dataclass
class _Batch:
    """What the run keeps of the whole batch: its subsets, the suites' columns of every track
    (`profiles`, and which are `valid`) and the tracks the report lists."""

    subsets: set[str]
    profiles: pd.DataFrame
    valid: np.ndarray
    listed: list[TrackCheck]

    @classmethod
    def read(cls, shards: Iterator[_Shard], result: ValidationResult) -> _Batch:
        """Read the shards, counting their tracks into `result`."""
        subsets, frames, valid, listed = set(), [], [], []
        for shard in shards:
            subsets |= {r["subset"] for r in shard.rows}
            frames.append(profile_frame(shard.checks))
            valid.append(np.array([c.valid for c in shard.checks], dtype=bool))
            listed = heapq.nsmallest(
                REPORT_TRACKS, listed + shard.checks, key=lambda c: (c.valid, c.track_id)
            )
            _count(result, shard.checks)
        return cls(subsets, pd.concat(frames, ignore_index=True), np.concatenate(valid), listed)


def _count(result: ValidationResult, checks: list[TrackCheck]) -> None:
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


def _upload_folder(store: ObjectStore, folder: Path, prefix: str) -> int:
    def put(path: Path) -> None:
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        store.put_file(f"{prefix}/{path.relative_to(folder).as_posix()}", path, kind)

    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, paths))
    return len(paths)
