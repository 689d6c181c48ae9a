"""The reports users open from the Airflow UI: data quality per validation run, evaluation per
model version. Both live in object storage; this module finds and assembles them."""

from __future__ import annotations

import html
import json
import mimetypes
import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

import sqlalchemy as sa

from musicvae.core import db
from musicvae.core.config import Settings
from musicvae.core.storage import ObjectStore


class ReportNotFoundError(LookupError):
    """No validation run has published a report (yet, or under that run id)."""


@dataclass(frozen=True)
class QualityRun:
    run_id: str
    started_at: datetime
    tracks_checked: int
    tracks_valid: int
    tracks_quarantined: int
    report_key: str
    status: str
    docs_key: str | None
    drifted_features: list[str] | None = None  # None: not compared (no champion yet)
    ood_share: float | None = None


_RUNS = (
    "SELECT q.run_id, q.started_at, q.tracks_checked, q.tracks_valid, q.tracks_quarantined, "
    "q.report_key, q.status, q.docs_key, d.drifted_features, d.ood_share "
    "FROM data_quality_runs q LEFT JOIN drift_runs d USING (run_id) "
    "WHERE q.report_key IS NOT NULL"
)


def quality_runs(settings: Settings, limit: int = 50) -> list[QualityRun]:
    with db.engine(settings.database_url).connect() as conn:
        rows = conn.execute(
            sa.text(f"{_RUNS} ORDER BY q.started_at DESC, q.run_id DESC LIMIT :n"), {"n": limit}
        ).all()
    return [QualityRun(*r) for r in rows]


def quality_run(settings: Settings, run_id: str | None = None) -> QualityRun:
    """One run, or the latest one when run_id is None."""
    if run_id is None:
        runs = quality_runs(settings, limit=1)
    else:
        with db.engine(settings.database_url).connect() as conn:
            runs = [
                QualityRun(*r)
                for r in conn.execute(sa.text(f"{_RUNS} AND q.run_id = :r"), {"r": run_id})
            ]
    if not runs:
        raise ReportNotFoundError(
            f"no data-quality report for run {run_id!r}"
            if run_id
            else "no data-quality report yet: merge_validate publishes one per run"
        )
    return runs[0]


def report_html(settings: Settings, run_id: str | None = None, base: str | None = None) -> str:
    """The report of one run, or of the latest run when run_id is None.

    `base` is where the run's own folder is relative to the page serving it: the report links
    to its Data Docs as 'docs/index.html', which must resolve under that run's folder whether
    the page is served as the latest report or as the run's report.
    """
    run = quality_run(settings, run_id)
    page = ObjectStore(settings).get_bytes(run.report_key).decode()
    if base is None:
        return page
    href = html.escape(base.format(run=quote(run.run_id, safe="")), quote=True)
    return page.replace("<meta charset=utf-8>", f"<meta charset=utf-8><base href='{href}'>", 1)


def docs_file(settings: Settings, run_id: str, path: str) -> tuple[bytes, str]:
    """One file of a run's Great Expectations Data Docs site, with its media type."""
    run = quality_run(settings, run_id)
    parts = path.split("/")
    if run.docs_key is None or not path or any(p in ("", ".", "..") for p in parts):
        raise ReportNotFoundError(f"no Data Docs file {path!r} for run {run_id!r}")
    prefix = run.docs_key.rsplit("/", 1)[0]
    try:
        data = ObjectStore(settings).get_bytes(f"{prefix}/{path}")
    except Exception as e:  # noqa: BLE001 - a missing object is a 404 whatever the S3 error code
        raise ReportNotFoundError(f"no Data Docs file {path!r} for run {run_id!r}") from e
    return data, mimetypes.guess_type(parts[-1])[0] or "application/octet-stream"


def _drift_cells(run: QualityRun) -> str:
    if run.drifted_features is None:
        return "<td></td><td></td>"
    features = html.escape(", ".join(run.drifted_features)) or "none"
    share = "not yet embedded" if run.ood_share is None else f"{run.ood_share:.0%}"
    return f"<td>{features}</td><td>{share}</td>"


def index_html(settings: Settings) -> str:
    runs = quality_runs(settings)
    rows = "".join(
        f"<tr><td><a href='runs/{quote(r.run_id, safe='')}/'>{html.escape(r.run_id)}</a></td>"
        f"<td>{r.status}</td><td>{r.started_at:%Y-%m-%d %H:%M}</td><td>{r.tracks_checked}</td>"
        f"<td>{r.tracks_valid}</td><td>{r.tracks_quarantined}</td>{_drift_cells(r)}</tr>"
        for r in runs
    )
    trend = (
        "<h2>Drift against the champion's training data</h2><img src='drift.png' "
        "style='max-width:100%' alt='drift trend'>"
        if any(r.drifted_features is not None for r in runs)
        else ""
    )
    return (
        "<!doctype html><meta charset=utf-8><title>Data quality</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px}</style>"
        "<h1>Data-quality runs</h1><p><a href='latest'>Latest report</a></p>"
        "<table><tr><th>run</th><th>status</th><th>started</th><th>checked</th><th>valid</th>"
        "<th>quarantined</th><th>drifted features</th><th>out of distribution</th></tr>"
        f"{rows}</table>{trend}"
    )


def drift_png(settings: Settings, limit: int = 30) -> bytes:
    """The drift trend of the last `limit` compared validation runs, as a PNG."""
    from musicvae.quality import thresholds
    from musicvae.ui import charts

    with db.engine(settings.database_url).connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT run_id, checked_at, features, ood_share FROM (SELECT * FROM drift_runs "
                "ORDER BY checked_at DESC, run_id DESC LIMIT :n) d ORDER BY checked_at, run_id"
            ),
            {"n": limit},
        ).all()
    if not rows:
        raise ReportNotFoundError("no validation run has been compared with a champion yet")
    names = sorted({name for r in rows for name in r.features})
    psi = {n: [r.features[n]["psi"] if n in r.features else None for r in rows] for n in names}
    limits = thresholds.load()
    return charts.png_bytes(
        charts.drift_trend,
        [f"{r.checked_at:%Y-%m-%d %H:%M}" for r in rows],
        psi,
        [r.ood_share for r in rows],
        (limits.max_psi, limits.max_ood_share),
    )


EVALUATION_FILE = re.compile(r"^[a-z_]+\.(png|txt|json)$")


def _model(settings: Settings, version: int):
    from musicvae.core.errors import ModelNotFoundError
    from musicvae.registry import versions

    with db.engine(settings.database_url).connect() as conn:
        try:
            mv = versions.get(conn, version)
            promotion, prefix = conn.execute(
                sa.text(
                    "SELECT promotion, evaluation_prefix FROM model_versions WHERE version = :v"
                ),
                {"v": version},
            ).one()
        except ModelNotFoundError as e:
            raise ReportNotFoundError(str(e)) from e
    if prefix is None:
        raise ReportNotFoundError(f"model version {version} has no evaluation report yet")
    return mv, promotion, prefix


def model_file(settings: Settings, version: int, name: str) -> bytes:
    """One file of a version's evaluation report (a plot, the table, the JSON results)."""
    if not EVALUATION_FILE.match(name):
        raise ReportNotFoundError(f"{name!r} is not an evaluation report file")
    _, _, prefix = _model(settings, version)
    try:
        return ObjectStore(settings).get_bytes(f"{prefix}/{name}")
    except Exception as e:  # noqa: BLE001 - a missing object is a 404 whatever the S3 error code
        raise ReportNotFoundError(f"no {name} for model version {version}") from e


def model_html(settings: Settings, version: int) -> str:
    mv, promotion, _ = _model(settings, version)
    table = html.escape(model_file(settings, version, "results.txt").decode())
    images = "".join(
        f"<h2>{title}</h2><img src='files/{name}' style='max-width:100%'>"
        for title, name in (
            ("Latent space", "latent_map.png"),
            ("Genres vs clusters", "contingency.png"),
            ("Results (genre)", "results_genre.png"),
            ("Results (quadrant)", "results_quadrant.png"),
            ("Training", "training.png"),
            ("Reconstructions", "reconstructions.png"),
        )
    )
    decision = html.escape((promotion or {}).get("reason", "not decided yet"))
    drift = mv.metrics.get("drift")
    moved = (
        f"<p>Latent space against the champion, version {drift['against_version']}, on "
        f"{drift['tracks']} tracks: kNN overlap at 10 {drift['knn_overlap_at_10']}, linear CKA "
        f"{drift['linear_cka']} (1 for the same space).</p>"
        if drift
        else ""
    )
    return (
        f"<!doctype html><meta charset=utf-8><title>Model v{mv.version}</title>"
        "<style>body{font-family:sans-serif;margin:2em}</style>"
        f"<h1>Model version {mv.version}</h1><p>snapshot {html.escape(mv.snapshot_id)}, "
        f"code {html.escape(mv.code_version)}, parameters "
        f"{html.escape(json.dumps(mv.params))}</p><p>Promotion: {decision}</p>{moved}"
        f"<pre>{table}</pre>{images}"
    )
