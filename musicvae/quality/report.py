"""The data-quality report of a validation run: one HTML page with the verdict, the drift
against the training data, every expectation, and the tracks (all of them, or the first
thousand of a larger batch, quarantined first)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from musicvae.quality import data_drift
from musicvae.quality.profiles import TrackCheck

if TYPE_CHECKING:
    from musicvae.quality.validate import ValidationResult


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
        f"{verdict}<p>Limits in musicvae/quality/data_quality.toml [drift]. The share of these "
        "tracks out of distribution (far from every cluster centre) is added to the drift_runs "
        "row once catalogue_assign has embedded them; the <a href='../../'>run list</a> shows "
        "it.</p>"
        "<table><tr><th>feature</th><th>PSI</th><th>KS</th><th>p</th><th>batch</th>"
        f"<th>snapshot</th><th></th></tr>{rows}</table>"
    )


def render_report(
    result: ValidationResult,
    checks: list[TrackCheck],  # the tracks to list: all, or the first of a large batch
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
    listed = (
        f"<p>The first {len(checks)} of {result.tracks_checked} tracks, quarantined first. Every "
        f"track's issues are in the table track_issues (run_id = '{run}').</p>"
        if len(checks) < result.tracks_checked
        else ""
    )
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
<h2>Tracks</h2>{listed}<table><tr><th>track</th><th>status</th><th>issues</th></tr>{rows}</table>"""
