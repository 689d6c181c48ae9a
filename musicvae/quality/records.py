"""A validation run's results in the catalogue, in one transaction: the run, its expectation
results, the drift check, and each track's issues, profile and new status, written a shard of
tracks at a time; the rows it staged for its suites go in the same transaction."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from typing import TYPE_CHECKING

import sqlalchemy as sa

from musicvae.quality import data_drift, staging
from musicvae.quality.profiles import TrackCheck

if TYPE_CHECKING:
    from musicvae.quality.validate import ValidationResult


def write_run(
    eng: sa.Engine,
    result: ValidationResult,
    outcomes,
    drift: data_drift.DriftCheck | None,
    shards: Iterable[list[TrackCheck]],
) -> None:
    """`shards`: the checks of the run's tracks, a shard at a time."""
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
        if drift is not None:
            data_drift.write_check(conn, result.run_id, drift)
        for checks in shards:
            _write_tracks(conn, result, checks)
        staging.clear(conn, result.run_id)


def _write_tracks(conn, result: ValidationResult, checks: list[TrackCheck]) -> None:
    conn.execute(
        sa.text("DELETE FROM track_issues WHERE run_id = :r AND track_id = ANY(:ids)"),
        {"r": result.run_id, "ids": [c.track_id for c in checks]},
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
            "INSERT INTO track_profiles (track_id, audio_sha256, lyrics_sha256, profile, run_id) "
            "SELECT track_id, audio_sha256, lyrics_sha256, CAST(:p AS jsonb), :r FROM tracks "
            "WHERE track_id = :t ON CONFLICT (track_id) DO UPDATE SET "
            "audio_sha256 = EXCLUDED.audio_sha256, lyrics_sha256 = EXCLUDED.lyrics_sha256, "
            "profile = EXCLUDED.profile, run_id = EXCLUDED.run_id"
        ),
        [{"p": json.dumps(c.profile), "r": result.run_id, "t": c.track_id} for c in checks],
    )
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
