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

import html
import json
import logging
import mimetypes
import re
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import sqlalchemy as sa

from musicvae.core import db, lineage
from musicvae.core.audiofile import open_audio
from musicvae.core.config import Settings
from musicvae.core.errors import BatchValidationError
from musicvae.core.lyrics import decode_lyrics
from musicvae.core.storage import ObjectStore
from musicvae.ingest.merge import QUADRANTS
from musicvae.quality import data_drift, expectations
from musicvae.quality.thresholds import Thresholds, load

log = logging.getLogger("musicvae.quality.validate")

AUDIO_FIELDS = (
    "audio_decodable",
    "audio_error",
    "codec",
    "sample_rate",
    "channels",
    "duration_s",
    "rms_dbfs",
    "peak",
    "clipped_fraction",
    "leading_silence_s",
    "trailing_silence_s",
    "digital_silence",
    "silence_dbfs",
)
LYRICS_FIELDS = (
    "lyrics_encoding",
    "lyrics_utf8",
    "lyrics_bom",
    "lyrics_chars",
    "lyrics_words",
    "lyrics_empty",
    "lyrics_garbage_ratio",
)
PAIRING = {  # (has audio, has lyrics)
    (True, True): "paired",
    (True, False): "audio_only",
    (False, True): "lyrics_only",
    (False, False): "none",
}
EXPECTED_PAIRING = {"audio": "audio_only", "lyrics": "lyrics_only", "bimodal": "paired"}
# Characters that are not garbage in song lyrics besides letters, digits and whitespace.
_PUNCTUATION = set(".,;:!?'\"()[]-–—…‘’“”&/*#%+=@$_~`<>|\\{}^")


@dataclass
class TrackCheck:
    track_id: str
    profile: dict = field(default_factory=dict)
    issues: list[tuple[str, str, str]] = field(default_factory=list)  # (check, severity, detail)

    def error(self, check: str, detail: str) -> None:
        self.issues.append((check, "error", detail))

    def warn(self, check: str, detail: str) -> None:
        self.issues.append((check, "warning", detail))

    @property
    def valid(self) -> bool:
        return not any(sev == "error" for _, sev, _ in self.issues)

    @property
    def reason(self) -> str | None:
        errors = [detail for _, sev, detail in self.issues if sev == "error"]
        return "; ".join(errors) or None


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


# -- profiling: what the content is ------------------------------------------------------------


def profile_audio(data: bytes, silence_dbfs: float) -> dict:
    try:
        with open_audio(data) as f:
            sr, channels, fmt = f.samplerate, f.channels, f.format
            samples = f.read(dtype="float32", always_2d=True)
    except sf.LibsndfileError as e:
        return {"audio_decodable": False, "audio_error": e.error_string}
    except (RuntimeError, TypeError, ValueError) as e:
        return {"audio_decodable": False, "audio_error": str(e)}
    # The whole clip is in memory once: no pass below allocates more than a boolean mask or
    # one channel's magnitudes, and no index array of every loud sample is built.
    n = samples.shape[0]
    magnitude = np.abs(samples)
    peak = float(magnitude.max()) if samples.size else 0.0
    clipped = np.count_nonzero(magnitude >= 0.999) / samples.size if samples.size else 0.0
    mono = samples[:, 0] if channels == 1 else samples.mean(axis=1)
    level = magnitude[:, 0] if channels == 1 else np.abs(mono)
    loud = level > 10 ** (silence_dbfs / 20)
    if loud.any():
        leading, trailing = int(np.argmax(loud)), int(np.argmax(loud[::-1]))
    else:
        leading = trailing = n
    rms = float(np.sqrt(np.dot(mono, mono) / n)) if n else 0.0
    return {
        "audio_decodable": True,
        "audio_error": None,
        "codec": fmt,
        "sample_rate": sr,
        "channels": channels,
        "duration_s": round(n / sr if sr else 0.0, 3),
        "rms_dbfs": round(20 * np.log10(max(rms, 1e-10)), 2),
        "peak": round(peak, 4),
        "clipped_fraction": round(float(clipped), 5),
        "leading_silence_s": round(leading / max(sr, 1), 3),
        "trailing_silence_s": round(trailing / max(sr, 1), 3),
        "digital_silence": peak == 0.0,
        "silence_dbfs": silence_dbfs,
    }


def garbage_ratio(text: str) -> float:
    """Share of characters that are not letters, digits, whitespace or common punctuation."""
    if not text:
        return 0.0
    bad = sum(not (ch.isalnum() or ch.isspace() or ch in _PUNCTUATION) for ch in text)
    return round(bad / len(text), 4)


def profile_lyrics(data: bytes) -> dict:
    decoded = decode_lyrics(data)
    text = decoded.text.strip()
    return {
        "lyrics_encoding": decoded.encoding,
        "lyrics_utf8": not decoded.fallback,
        "lyrics_bom": decoded.encoding == "utf-8-sig",
        "lyrics_chars": len(text),
        "lyrics_words": len(re.findall(r"\w+", text)),
        "lyrics_empty": not text,
        "lyrics_garbage_ratio": garbage_ratio(text),
    }


# -- judging: what the profile means, by the thresholds ------------------------------------------


def judge_audio(p: dict, limits: Thresholds, check: TrackCheck) -> None:
    if not p["audio_decodable"]:
        check.error("audio_decodable", f"audio cannot be decoded: {p['audio_error']}")
        return
    duration, sr = p["duration_s"], p["sample_rate"]
    if p["digital_silence"]:
        check.error("audio_not_silent", "audio is digital silence")
    if not limits.min_duration_s <= duration <= limits.max_duration_s:
        check.error(
            "audio_duration",
            f"duration {duration:.1f} s outside "
            f"[{limits.min_duration_s:g}, {limits.max_duration_s:g}] s",
        )
    if sr < limits.min_sample_rate:
        check.error("audio_sample_rate", f"sample rate {sr} Hz below {limits.min_sample_rate} Hz")
    if p["clipped_fraction"] > limits.max_clipped_fraction:
        check.error("audio_clipping", f"{p['clipped_fraction']:.1%} of samples clipped")
    edge = max(p["leading_silence_s"], p["trailing_silence_s"])
    if not p["digital_silence"] and edge > limits.max_edge_silence_s:
        check.warn(
            "audio_edge_silence",
            f"more than {limits.max_edge_silence_s:g} s of silence at the start or end",
        )


def judge_lyrics(p: dict, limits: Thresholds, check: TrackCheck) -> None:
    if not p["lyrics_utf8"]:
        check.warn("lyrics_utf8", f"lyrics are not UTF-8; decoded as {p['lyrics_encoding']}")
    if p["lyrics_bom"]:
        check.warn("lyrics_bom", "lyrics start with a UTF-8 byte-order mark (removed)")
    if p["lyrics_empty"]:
        check.error("lyrics_empty", "lyrics are empty (only whitespace)")
    elif p["lyrics_words"] < limits.min_lyrics_words:
        check.error(
            "lyrics_length", f"lyrics have {p['lyrics_words']} words (< {limits.min_lyrics_words})"
        )
    elif p["lyrics_chars"] > limits.max_lyrics_chars:
        check.error(
            "lyrics_length",
            f"lyrics have {p['lyrics_chars']} characters (> {limits.max_lyrics_chars})",
        )
    if p["lyrics_garbage_ratio"] > limits.max_garbage_ratio:
        check.error(
            "lyrics_garbage",
            f"{p['lyrics_garbage_ratio']:.1%} of the lyrics are not text "
            f"(> {limits.max_garbage_ratio:.0%})",
        )


def check_track(row, store: ObjectStore, limits: Thresholds, known: dict) -> TrackCheck:
    """Profile one track (reusing a known profile of the same content) and judge it."""
    check = TrackCheck(row.track_id)
    p = check.profile
    if row.quadrant not in QUADRANTS:
        check.error("quadrant", f"quadrant {row.quadrant!r} is not one of Q1..Q4")
    if row.audio_key:
        cached = known.get(("audio", row.audio_sha256))
        p.update(cached or profile_audio(store.get_bytes(row.audio_key), limits.silence_dbfs))
        p["profiled"] = cached is None
        judge_audio(p, limits, check)
        suffix = row.audio_key.rsplit(".", 1)[-1].upper()
        if p["audio_decodable"] and p["codec"] != suffix:
            check.warn("audio_format", f"a {p['codec']} file named .{suffix.lower()}")
    if row.lyrics_key:
        cached = known.get(("lyrics", row.lyrics_sha256))
        p.update(cached or profile_lyrics(store.get_bytes(row.lyrics_key)))
        p["profiled"] = p.get("profiled", False) or cached is None
        judge_lyrics(p, limits, check)
    p["pairing"] = PAIRING[(bool(row.audio_key), bool(row.lyrics_key))]
    p["expected_pairing"] = EXPECTED_PAIRING[row.subset.split("_")[0]]
    if p["pairing"] != p["expected_pairing"]:
        check.error(
            "pairing",
            f"{row.subset} tracks are {p['expected_pairing']}, this one is {p['pairing']}",
        )
    p["duplicate_of"] = None
    return check


# -- the run -------------------------------------------------------------------------------------

NEW_TRACKS = sa.text(
    "SELECT track_id, subset, quadrant, audio_key, audio_sha256, lyrics_key, lyrics_sha256 "
    "FROM tracks WHERE status = 'new' ORDER BY track_id"
)

# A track whose audio (or lyrics) is byte for byte that of another track under another id is the
# copy when that other track was validated before, or is new too but was seen first (then: has
# the smaller track id). The original keeps its status.
DUPLICATES = sa.text("""
SELECT t.track_id, kind, min(o.track_id) AS other
FROM tracks t
CROSS JOIN LATERAL (VALUES ('audio'), ('lyrics')) AS k (kind)
JOIN tracks o ON o.track_id <> t.track_id
    AND ((kind = 'audio' AND t.audio_key IS NOT NULL AND o.audio_sha256 = t.audio_sha256
          AND o.audio_song IS DISTINCT FROM t.audio_song)
      OR (kind = 'lyrics' AND t.lyrics_key IS NOT NULL AND o.lyrics_sha256 = t.lyrics_sha256
          AND o.lyric_song IS DISTINCT FROM t.lyric_song))
    AND (o.status <> 'new' OR (o.first_seen, o.track_id) < (t.first_seen, t.track_id))
WHERE t.status = 'new'
GROUP BY t.track_id, kind
""")


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


def run_validation(
    settings: Settings, run_id: str, limits: Thresholds | None = None
) -> ValidationResult:
    limits = limits or load()
    store = ObjectStore(settings)
    eng = db.engine(settings.database_url)
    db.migrate(eng)
    with eng.connect() as conn:
        rows = conn.execute(NEW_TRACKS).all()
        if rows:
            known = known_profiles(conn, rows, limits.silence_dbfs)
            duplicates = conn.execute(DUPLICATES).all()
    result = ValidationResult(run_id)
    if not rows:
        log.info("validate %s: no new tracks", run_id)
        return result

    # Importing Great Expectations takes seconds; it runs while the tracks are decoded.
    gx_import = threading.Thread(target=expectations.import_gx, daemon=True)
    gx_import.start()
    checks = _profile_all(rows, store, limits, known)
    by_id = {c.track_id: c for c in checks}
    for track_id, kind, other in duplicates:
        check = by_id[track_id]
        check.profile["duplicate_of"] = other
        check.error(f"{kind}_duplicate", f"same {kind} content as {other}")

    result.tracks_checked = len(checks)
    result.tracks_valid = sum(c.valid for c in checks)
    result.tracks_quarantined = result.tracks_checked - result.tracks_valid
    result.tracks_profiled = sum(bool(c.profile.get("profiled")) for c in checks)
    for c in checks:
        for name, severity, _ in c.issues:
            result.reasons[f"{severity}:{name}"] = result.reasons.get(f"{severity}:{name}", 0) + 1

    subsets = sorted({r.subset for r in rows})
    with eng.connect() as conn:
        batches = {"track_profiles": (profile_frame(checks), expectations.profile_suite(limits))}
        for subset in subsets:
            batches[f"metadata.{subset}"] = (
                metadata_frame(conn, subset),
                expectations.metadata_suite(subset, limits),
            )
        previous = conn.execute(
            sa.text(
                "SELECT valid_fraction, tracks_checked FROM data_quality_runs "
                "WHERE status = 'passed' AND run_id <> :r AND valid_fraction IS NOT NULL "
                "ORDER BY started_at DESC LIMIT 1"
            ),
            {"r": run_id},
        ).first()

    prefix = f"reports/validation/{_safe(run_id)}"
    gx_import.join()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="musicvae-docs-") as docs:
        outcomes = expectations.run_suites(batches, Path(docs))
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
            valid = [c.profile for c in checks if c.valid]
            drift = data_drift.check_batch(conn, store, valid, limits)
        result.drifted_features = drift.drifted_features if drift else []
    result.report_key = f"{prefix}/index.html"
    result.report_url, result.docs_url = store.url(result.report_key), store.url(result.docs_key)
    store.put_json(
        f"{prefix}/summary.json", {**result.as_dict(), "tracks": [asdict(c) for c in checks]}
    )
    store.put_bytes(
        result.report_key,
        render_report(result, checks, outcomes, drift).encode(),
        "text/html; charset=utf-8",
    )
    _write(eng, result, checks, outcomes, drift)
    lineage.read(lineage.objects(settings, "raw"), lineage.table(settings, "tracks"))
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
            f"status; fix the input (or the thresholds in musicvae/data_quality.toml) and "
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


def profile_frame(checks: list[TrackCheck]) -> pd.DataFrame:
    columns = ["track_id", *AUDIO_FIELDS, *LYRICS_FIELDS, "pairing", "expected_pairing"]
    frame = pd.DataFrame(
        [{"track_id": c.track_id, **c.profile} for c in checks], columns=[*columns, "duplicate_of"]
    )
    numeric = [
        "sample_rate",
        "duration_s",
        "clipped_fraction",
        "leading_silence_s",
        "trailing_silence_s",
        "lyrics_words",
        "lyrics_chars",
        "lyrics_garbage_ratio",
    ]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    return frame


def metadata_frame(conn, subset: str) -> pd.DataFrame:
    """Every track of the subset, as its metadata row was read ('' counts as missing)."""
    rows = conn.execute(
        sa.text("SELECT song_id, metadata FROM tracks WHERE subset = :s ORDER BY song_id"),
        {"s": subset},
    ).all()
    frame = pd.DataFrame([{**meta, "song_id": song} for song, meta in rows])
    return frame.replace({"": None})


def _upload_folder(store: ObjectStore, folder: Path, prefix: str) -> int:
    def put(path: Path) -> None:
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        store.put_file(f"{prefix}/{path.relative_to(folder).as_posix()}", path, kind)

    paths = sorted(p for p in folder.rglob("*") if p.is_file())
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, paths))
    return len(paths)


def _safe(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id)


def _write(
    eng: sa.Engine,
    result: ValidationResult,
    checks: list[TrackCheck],
    outcomes,
    drift: data_drift.DriftCheck | None,
) -> None:
    with eng.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO data_quality_runs (run_id, tracks_checked, tracks_valid, "
                "tracks_quarantined, report_key, summary, status, failure, valid_fraction, "
                "docs_key) VALUES (:run_id, :c, :v, :q, :k, CAST(:s AS jsonb), :status, "
                ":failure, :vf, :docs) ON CONFLICT (run_id) DO UPDATE SET "
                "tracks_checked = EXCLUDED.tracks_checked, tracks_valid = EXCLUDED.tracks_valid, "
                "tracks_quarantined = EXCLUDED.tracks_quarantined, "
                "report_key = EXCLUDED.report_key, summary = EXCLUDED.summary, "
                "status = EXCLUDED.status, failure = EXCLUDED.failure, "
                "valid_fraction = EXCLUDED.valid_fraction, docs_key = EXCLUDED.docs_key"
            ),
            {
                "run_id": result.run_id,
                "c": result.tracks_checked,
                "v": result.tracks_valid,
                "q": result.tracks_quarantined,
                "k": result.report_key,
                "s": json.dumps({"reasons": result.reasons}),
                "status": result.status,
                "failure": result.failure,
                "vf": result.valid_fraction,
                "docs": result.docs_key,
            },
        )
        conn.execute(
            sa.text("DELETE FROM expectation_results WHERE run_id = :r"), {"r": result.run_id}
        )
        conn.execute(
            sa.text(
                "INSERT INTO expectation_results (run_id, suite, position, expectation, "
                "column_name, kwargs, severity, success, element_count, unexpected_count, "
                "unexpected_percent, observed_value) VALUES (:run_id, :suite, :position, "
                ":expectation, :column_name, CAST(:kwargs AS jsonb), :severity, :success, "
                ":element_count, :unexpected_count, :unexpected_percent, "
                "CAST(:observed_value AS jsonb))"
            ),
            [
                {
                    **asdict(o),
                    "run_id": result.run_id,
                    "kwargs": json.dumps(o.kwargs),
                    "observed_value": json.dumps(o.observed_value),
                }
                for o in outcomes
            ],
        )
        ids = [c.track_id for c in checks]
        conn.execute(
            sa.text("DELETE FROM track_issues WHERE run_id = :r AND track_id = ANY(:ids)"),
            {"r": result.run_id, "ids": ids},
        )
        issues = [
            {"r": result.run_id, "t": c.track_id, "n": n, "s": s, "d": d}
            for c in checks
            for n, s, d in c.issues
        ]
        if issues:
            conn.execute(
                sa.text(
                    "INSERT INTO track_issues (run_id, track_id, check_name, severity, detail) "
                    "VALUES (:r, :t, :n, :s, :d)"
                ),
                issues,
            )
        conn.execute(
            sa.text(
                "INSERT INTO track_profiles (track_id, audio_sha256, lyrics_sha256, profile, "
                "run_id) "
                "SELECT track_id, audio_sha256, lyrics_sha256, CAST(:p AS jsonb), :r FROM tracks "
                "WHERE track_id = :t ON CONFLICT (track_id) DO UPDATE SET "
                "audio_sha256 = EXCLUDED.audio_sha256, lyrics_sha256 = EXCLUDED.lyrics_sha256, "
                "profile = EXCLUDED.profile, run_id = EXCLUDED.run_id"
            ),
            [{"p": json.dumps(c.profile), "r": result.run_id, "t": c.track_id} for c in checks],
        )
        if drift is not None:
            data_drift.write_check(conn, result.run_id, drift)
        if result.failure:
            return  # a failed batch decides nothing about its tracks: they stay 'new'
        # Only tracks still 'new' change: an ingest that re-opened a track meanwhile wins.
        conn.execute(
            sa.text(
                "UPDATE tracks SET status = :s, status_reason = :why, validate_run_id = :r, "
                "updated_at = now() WHERE track_id = :t AND status = 'new'"
            ),
            [
                {
                    "s": "valid" if c.valid else "quarantined",
                    "why": c.reason,
                    "r": result.run_id,
                    "t": c.track_id,
                }
                for c in checks
            ],
        )


def render_drift(drift: data_drift.DriftCheck | None) -> str:
    if drift is None:
        return "<p>No champion model yet: nothing to compare this batch with.</p>"
    rows = "".join(
        f"<tr class={'bad' if s.drifted else 'ok'}><td>{name}</td><td>{s.psi:.3f}</td>"
        f"<td>{s.ks:.3f}</td><td>{s.p_value:.2g}</td><td>{s.n_batch}</td><td>{s.n_reference}</td>"
        f"<td>{'DRIFTED' if s.drifted else ''}</td></tr>"
        for name, s in drift.features.items()
    )
    against = (
        f"the training snapshot {html.escape(drift.snapshot_id)} of the champion, model version "
        f"{drift.model_version} ({drift.reference_tracks} tracks)"
    )
    verdict = (
        f"<p class=bad><b>Data drift:</b> {html.escape(', '.join(drift.drifted_features))} of "
        f"this batch moved away from {against}. A model trained before this batch has not seen "
        "data like it; retrain to learn from it.</p>"
        if drift.drifted_features
        else f"<p>No feature moved away from {against}.</p>"
    )
    return (
        f"{verdict}<p>Limits in musicvae/data_quality.toml [drift]. The share of these tracks "
        "out of distribution (far from every cluster centre) is added to the drift_runs row once "
        "catalogue_assign has embedded them; the <a href='../../'>run list</a> shows it.</p>"
        "<table><tr><th>feature</th><th>PSI</th><th>KS</th><th>p</th><th>batch</th>"
        f"<th>snapshot</th><th></th></tr>{rows}</table>"
    )


def render_report(
    result: ValidationResult,
    checks: list[TrackCheck],
    outcomes,
    drift: data_drift.DriftCheck | None = None,
) -> str:
    rows = "".join(
        f"<tr class={'ok' if c.valid else 'bad'}><td>{html.escape(c.track_id)}</td>"
        f"<td>{'valid' if c.valid else 'quarantined'}</td>"
        f"<td>{html.escape('; '.join(f'{s}: {d}' for _, s, d in c.issues))}</td></tr>"
        for c in sorted(checks, key=lambda c: (c.valid, c.track_id))
    )
    reasons = "".join(f"<li>{html.escape(k)}: {v}</li>" for k, v in sorted(result.reasons.items()))
    expected = "".join(
        f"<tr class={'ok' if o.success else 'bad'}><td>{html.escape(o.suite)}</td>"
        f"<td>{html.escape(o.expectation)}</td><td>{html.escape(o.column_name or '')}</td>"
        f"<td>{o.severity}</td><td>{'passed' if o.success else 'FAILED'}</td>"
        f"<td>{'' if o.unexpected_count is None else o.unexpected_count}</td></tr>"
        for o in outcomes
    )
    run = html.escape(result.run_id)
    verdict = (
        f"<p class=bad><b>FAILED as a batch:</b> {html.escape(result.failure)}. "
        "No track changed status.</p>"
        if result.failure
        else "<p><b>Passed.</b></p>"
    )
    return f"""<!doctype html><meta charset=utf-8><title>Data quality {run}</title>
<style>body{{font-family:sans-serif;margin:2em}}td{{padding:2px 8px}}.bad{{background:#fdd}}</style>
<h1>Data quality run {run}</h1>{verdict}
<p><a href="docs/index.html">Great Expectations Data Docs</a></p>
<p>{result.tracks_checked} tracks checked: {result.tracks_valid} valid,
{result.tracks_quarantined} quarantined.</p><ul>{reasons}</ul>
<h2>Against the training data</h2>{render_drift(drift) if not result.failure else ""}
<h2>Expectations</h2><table><tr><th>suite</th><th>expectation</th><th>column</th>
<th>severity</th><th>result</th><th>unexpected</th></tr>{expected}</table>
<h2>Tracks</h2><table><tr><th>track</th><th>status</th><th>issues</th></tr>{rows}</table>"""
