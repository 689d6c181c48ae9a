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

import logging
import mimetypes
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import sqlalchemy as sa

# Imported here, not by the thread that imports Great Expectations (which imports it on its way):
# SQLAlchemy's core reaches for it lazily on this thread's first query, and could find it half
# made ("partially initialized module 'sqlalchemy.orm.exc'", seen in a benchmark run).
import sqlalchemy.orm  # noqa: F401

from musicvae.core import db, lineage
from musicvae.core.config import Settings, shard_size
from musicvae.core.errors import BatchValidationError
from musicvae.core.shards import discard, inputs, ordered, output_key, run_prefix, split
from musicvae.core.storage import ObjectStore
from musicvae.quality import data_drift, expectations, staging
from musicvae.quality.batch import Batch, checked, find_copies
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

    The shards are read twice, one at a time: first for the counts and the tracks the report
    lists, staging the columns the suites read in the database, where the suites run; then,
    once the batch is decided, to write each track. No more than a shard's profiles are held at
    once."""
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
        copies = find_copies(conn, store, shards)
    with eng.begin() as conn:
        batch = Batch.stage(conn, checked(store, shards, copies), result)
    prefix = f"reports/{run_prefix('validation', run_id)}"
    # The suites import GX too: two threads importing it at once can see a module half made.
    gx_import.join()
    suites = {"track_profiles": expectations.profile_suite(limits)}
    selects = {"track_profiles": staging.profiles(run_id)}
    with eng.connect() as conn:
        for subset in sorted(batch.subsets):
            suites[f"metadata.{subset}"] = suite = expectations.metadata_suite(subset, limits)
            selects[f"metadata.{subset}"] = staging.metadata(
                conn, subset, expectations.columns(suite)
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
        with staging.views(eng, run_id, selects) as views:
            outcomes = expectations.run_suites(
                settings.database_url, {n: (views[n], suites[n]) for n in suites}, Path(docs)
            )
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
            drift = data_drift.check_batch(conn, store, run_id, limits)
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
    write_run(eng, result, outcomes, drift, (s.checks for s in checked(store, shards, copies)))
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


def _upload_folder(store: ObjectStore, folder: Path, prefix: str) -> int:
    def put(path: Path) -> None:
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        store.put_file(f"{prefix}/{path.relative_to(folder).as_posix()}", path, kind)

    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, paths))
    return len(paths)
