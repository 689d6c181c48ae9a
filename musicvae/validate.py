"""merge_validate: profile every new track, decide valid or quarantined, publish a report.

Only tracks in status `new` are looked at (ingest resets a track to `new` when its content
changes), so the cost follows the new data. One bad file quarantines one track, with reasons;
it never stops the batch.
"""

from __future__ import annotations

import html
import io
import json
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import soundfile as sf
import sqlalchemy as sa

from musicvae import db
from musicvae.catalogue import QUADRANTS
from musicvae.config import Settings
from musicvae.lyrics import decode_lyrics
from musicvae.storage import ObjectStore

log = logging.getLogger("musicvae.validate")


@dataclass(frozen=True)
class Thresholds:
    """Limits a track must meet. MERGE clips are 30 s excerpts, hence the duration window."""

    min_duration_s: float = 15.0
    max_duration_s: float = 90.0
    min_sample_rate: int = 16000
    silence_dbfs: float = -60.0  # below this a sample counts as silent
    max_clipped_fraction: float = 0.01  # samples at full scale
    max_edge_silence_s: float = 10.0  # leading or trailing silence
    min_lyrics_words: int = 5
    max_lyrics_chars: int = 20000


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
    report_key: str | None = None
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def profile_audio(data: bytes, limits: Thresholds, check: TrackCheck) -> None:
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            sr, channels, fmt = f.samplerate, f.channels, f.format
            samples = f.read(dtype="float32", always_2d=True)
    except sf.LibsndfileError as e:
        check.error("audio_decodable", f"audio cannot be decoded: {e.error_string}")
        return
    except (RuntimeError, TypeError, ValueError) as e:
        check.error("audio_decodable", f"audio cannot be decoded: {e}")
        return
    duration = samples.shape[0] / sr if sr else 0.0
    mono = samples.mean(axis=1) if samples.size else np.zeros(0, np.float32)
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    loud = np.flatnonzero(np.abs(mono) > 10 ** (limits.silence_dbfs / 20))
    check.profile.update(
        codec=fmt,
        sample_rate=sr,
        channels=channels,
        duration_s=round(duration, 3),
        rms_dbfs=round(
            20 * np.log10(max(float(np.sqrt(np.mean(mono**2))) if mono.size else 0, 1e-10)), 2
        ),
        peak=round(peak, 4),
        clipped_fraction=round(float(np.mean(np.abs(samples) >= 0.999)) if samples.size else 0, 5),
        leading_silence_s=round((loud[0] if loud.size else mono.size) / max(sr, 1), 3),
        trailing_silence_s=round(
            (mono.size - 1 - loud[-1] if loud.size else mono.size) / max(sr, 1), 3
        ),
    )
    p = check.profile
    if peak == 0.0:
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
    if (
        peak > 0
        and max(p["leading_silence_s"], p["trailing_silence_s"]) > limits.max_edge_silence_s
    ):
        check.warn(
            "audio_edge_silence",
            f"more than {limits.max_edge_silence_s:g} s of silence at the start or end",
        )


def profile_lyrics(data: bytes, limits: Thresholds, check: TrackCheck) -> None:
    decoded = decode_lyrics(data)
    text = decoded.text.strip()
    words = len(re.findall(r"\w+", text))
    check.profile.update(
        lyrics_encoding=decoded.encoding, lyrics_chars=len(text), lyrics_words=words
    )
    if decoded.fallback:
        check.warn("lyrics_utf8", f"lyrics are not UTF-8; decoded as {decoded.encoding}")
    if words < limits.min_lyrics_words:
        check.error("lyrics_length", f"lyrics have {words} words (< {limits.min_lyrics_words})")
    elif len(text) > limits.max_lyrics_chars:
        check.error(
            "lyrics_length", f"lyrics have {len(text)} characters (> {limits.max_lyrics_chars})"
        )


def check_track(row, store: ObjectStore, limits: Thresholds) -> TrackCheck:
    check = TrackCheck(row.track_id)
    if row.quadrant not in QUADRANTS:
        check.error("quadrant", f"quadrant {row.quadrant!r} is not one of Q1..Q4")
    if row.audio_key:
        profile_audio(store.get_bytes(row.audio_key), limits, check)
    if row.lyrics_key:
        profile_lyrics(store.get_bytes(row.lyrics_key), limits, check)
    return check


def run_validation(
    settings: Settings, run_id: str, limits: Thresholds = Thresholds()
) -> ValidationResult:
    store = ObjectStore(settings)
    eng = db.engine(settings.database_url)
    db.migrate(eng)
    with eng.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT track_id, quadrant, audio_key, lyrics_key FROM tracks "
                "WHERE status = 'new' ORDER BY track_id"
            )
        ).all()
    result = ValidationResult(run_id)
    if not rows:
        log.info("validate %s: no new tracks", run_id)
        return result

    started = time.monotonic()
    checks: list[TrackCheck] = []
    # Fetching from S3 and decoding MP3 both release the GIL; threads keep both cores busy.
    with ThreadPoolExecutor(max_workers=4) as pool:
        for i, check in enumerate(pool.map(lambda r: check_track(r, store, limits), rows), 1):
            checks.append(check)
            if i % 100 == 0 or i == len(rows):
                log.info(
                    "validate: %d/%d tracks profiled (%.1f tracks/s)",
                    i,
                    len(rows),
                    i / (time.monotonic() - started),
                )

    result.tracks_checked = len(checks)
    result.tracks_valid = sum(c.valid for c in checks)
    result.tracks_quarantined = result.tracks_checked - result.tracks_valid
    for c in checks:
        for name, severity, _ in c.issues:
            result.reasons[f"{severity}:{name}"] = result.reasons.get(f"{severity}:{name}", 0) + 1
    result.report_key = f"reports/validation/{_safe(run_id)}/index.html"
    store.put_json(
        f"reports/validation/{_safe(run_id)}/summary.json",
        {**result.as_dict(), "tracks": [asdict(c) for c in checks]},
    )
    store.put_bytes(
        result.report_key, render_report(result, checks).encode(), "text/html; charset=utf-8"
    )
    _write(eng, result, checks)
    log.info(
        "validate %s: %d checked, %d valid, %d quarantined; report %s",
        run_id,
        result.tracks_checked,
        result.tracks_valid,
        result.tracks_quarantined,
        store.url(result.report_key),
    )
    return result


def _safe(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id)


def _write(eng: sa.Engine, result: ValidationResult, checks: list[TrackCheck]) -> None:
    with eng.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO data_quality_runs (run_id, tracks_checked, tracks_valid, "
                "tracks_quarantined, report_key, summary) VALUES (:run_id, :c, :v, :q, :k, "
                "CAST(:s AS jsonb)) ON CONFLICT (run_id) DO UPDATE SET "
                "tracks_checked = data_quality_runs.tracks_checked + EXCLUDED.tracks_checked, "
                "tracks_valid = data_quality_runs.tracks_valid + EXCLUDED.tracks_valid, "
                "tracks_quarantined = data_quality_runs.tracks_quarantined "
                "+ EXCLUDED.tracks_quarantined, summary = EXCLUDED.summary"
            ),
            {
                "run_id": result.run_id,
                "c": result.tracks_checked,
                "v": result.tracks_valid,
                "q": result.tracks_quarantined,
                "k": result.report_key,
                "s": json.dumps({"reasons": result.reasons}),
            },
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


def render_report(result: ValidationResult, checks: list[TrackCheck]) -> str:
    rows = "".join(
        f"<tr class={'ok' if c.valid else 'bad'}><td>{html.escape(c.track_id)}</td>"
        f"<td>{'valid' if c.valid else 'quarantined'}</td>"
        f"<td>{html.escape('; '.join(f'{s}: {d}' for _, s, d in c.issues))}</td></tr>"
        for c in sorted(checks, key=lambda c: (c.valid, c.track_id))
    )
    reasons = "".join(f"<li>{html.escape(k)}: {v}</li>" for k, v in sorted(result.reasons.items()))
    run = html.escape(result.run_id)
    return f"""<!doctype html><meta charset=utf-8><title>Data quality {run}</title>
<style>body{{font-family:sans-serif;margin:2em}}td{{padding:2px 8px}}.bad{{background:#fdd}}</style>
<h1>Data quality run {run}</h1>
<p>{result.tracks_checked} tracks checked: {result.tracks_valid} valid,
{result.tracks_quarantined} quarantined.</p><ul>{reasons}</ul>
<table><tr><th>track</th><th>status</th><th>issues</th></tr>{rows}</table>"""
