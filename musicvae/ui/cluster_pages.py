"""The clusters pages of the UI plugin (/musicvae/clusters/): the current run's clusters, what
it changed against the run before it, how that churn went over the recent runs, and one card per
cluster (name, mix, the medoids to listen to, neighbours, a map).

Everything is read from SQL (`cluster_summary`, `cluster_cards`, `cluster_run_changes`), so the
pages show what an analyst's query shows. Audio is linked, never proxied: each medoid gets a
presigned object-storage link that expires after AUDIO_LINK_TTL.
"""

from __future__ import annotations

import html
import json
from datetime import timedelta
from urllib.parse import quote

import numpy as np
import sqlalchemy as sa

from musicvae.core import db
from musicvae.core.config import Settings
from musicvae.core.storage import ObjectStore
from musicvae.ui.reports import ReportNotFoundError

AUDIO_LINK_TTL = timedelta(minutes=15)

STYLE = (
    "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:left}</style>"
)


def clusters_html(settings: Settings) -> str:
    with db.engine(settings.database_url).connect() as conn:
        clusters = conn.execute(sa.text("SELECT * FROM cluster_summary")).mappings().all()
        if not clusters:
            raise ReportNotFoundError("no clusters yet: catalogue_recluster writes them")
        run = clusters[0]
        history = (
            conn.execute(
                sa.text(
                    "SELECT c.*, r.created_at, r.model_version FROM cluster_run_changes c "
                    "JOIN cluster_runs r USING (run_id) ORDER BY r.created_at DESC LIMIT 20"
                )
            )
            .mappings()
            .all()
        )
    rows = "".join(
        f"<tr><td><a href='{c['cluster_id']}'>{c['cluster_id']}</a></td>"
        f"<td>{html.escape(c['label'])}</td><td>{c['size']}</td>"
        f"<td>{_counts(c['top_genres'])}</td><td>{_counts(c['top_quadrants'])}</td></tr>"
        for c in sorted(clusters, key=lambda c: c["cluster_id"])
    )
    latest = next((h for h in history if h["run_id"] == run["run_id"]), None)
    return (
        f"<!doctype html><meta charset=utf-8><title>Clusters</title>{STYLE}"
        f"<h1>Clusters of run {html.escape(run['run_id'])}</h1>"
        f"<p>model version {run['model_version']}, {run['created_at']:%Y-%m-%d %H:%M} UTC</p>"
        "<table><tr><th>id</th><th>name</th><th>tracks</th><th>top genres</th>"
        f"<th>quadrants</th></tr>{rows}</table>"
        f"<h2>What this run changed</h2>{_churn(latest)}"
        f"<h2>Churn over the recent runs</h2>{_history(history)}"
    )


def _counts(counts: dict) -> str:
    return ", ".join(f"{html.escape(str(k))} {v}" for k, v in counts.items())


def _churn(change) -> str:
    if change is None:
        return "<p>The first run: nothing to compare with.</p>"
    run = quote(change["run_id"], safe="")
    facts = {
        "tracks moved": f"{change['tracks_moved']} of {change['tracks_compared']} "
        f"({change['share_moved']:.1%})",
        "ARI with the previous run": change["ari"],
        "clusters born": change["born"] or "none",
        "clusters died": change["died"] or "none",
        "splits (previous → now)": json.dumps(change["splits"]) if change["splits"] else "none",
        "merges (now ← previous)": json.dumps(change["merges"]) if change["merges"] else "none",
    }
    rows = "".join(f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items())
    return (
        f"<p>Against run {html.escape(change['previous_run_id'])}:</p><table>{rows}</table>"
        f"<img src='runs/{run}/flows.png' alt='tracks between the two runs' style='max-width:100%'>"
    )


def _history(history) -> str:
    if not history:
        return "<p>No run has been compared yet.</p>"
    rows = "".join(
        f"<tr><td>{html.escape(h['run_id'])}</td><td>{h['created_at']:%Y-%m-%d %H:%M}</td>"
        f"<td>{h['model_version']}</td><td>{h['share_moved']:.1%}</td><td>{h['ari']}</td>"
        f"<td>{len(h['born'])}</td><td>{len(h['died'])}</td></tr>"
        for h in history
    )
    return (
        "<table><tr><th>run</th><th>at</th><th>model</th><th>moved</th><th>ARI</th>"
        f"<th>born</th><th>died</th></tr>{rows}</table>"
    )


def flows_png(settings: Settings, run_id: str) -> bytes:
    """The alluvial plot of a run's flows of tracks from the run before it."""
    from musicvae.ui.charts import cluster_flows, png_bytes

    with db.engine(settings.database_url).connect() as conn:
        row = conn.execute(
            sa.text("SELECT previous_run_id, flows FROM cluster_run_changes WHERE run_id = :r"),
            {"r": run_id},
        ).first()
    if row is None:
        raise ReportNotFoundError(f"run {run_id!r} has no recorded changes")
    title = f"Tracks from run {row.previous_run_id} to {run_id}"
    return png_bytes(cluster_flows, row.flows, title=title)


def _card_row(settings: Settings, cluster_id: int):
    """One row of `cluster_cards`."""
    with db.engine(settings.database_url).connect() as conn:
        row = (
            conn.execute(
                sa.text("SELECT * FROM cluster_cards WHERE cluster_id = :c"), {"c": cluster_id}
            )
            .mappings()
            .first()
        )
    if row is None:
        raise ReportNotFoundError(f"the current run has no cluster {cluster_id}")
    return row


def card(settings: Settings, cluster_id: int) -> dict:
    """One row of `cluster_cards`, with a presigned audio link on each medoid."""
    row = _card_row(settings, cluster_id)
    store = ObjectStore(settings)
    medoids = [
        {
            **m,
            "audio_url": store.presigned_url(m["audio_key"], AUDIO_LINK_TTL)
            if m["audio_key"]
            else None,
        }
        for m in row["medoids"] or []
    ]
    return {**row, "medoids": medoids}


def card_html(settings: Settings, cluster_id: int) -> str:
    c = card(settings, cluster_id)
    medoids = "".join(_medoid_row(m) for m in c["medoids"])
    neighbours = ", ".join(f"<a href='{n}'>{n}</a>" for n in c["neighbours"]) or "none"
    return (
        f"<!doctype html><meta charset=utf-8><title>Cluster {cluster_id}</title>{STYLE}"
        f"<p><a href='./'>All clusters</a></p><h1>{cluster_id}: {html.escape(c['name'])}</h1>"
        f"<p>{c['size']} track{'s' if c['size'] != 1 else ''} in run "
        f"{html.escape(c['run_id'])} (model version "
        f"{c['model_version']}). Genres: {_counts(c['top_genres'])}. Quadrants: "
        f"{_counts(c['top_quadrants'])}.</p>"
        "<h2>Nearest its centre</h2><table><tr><th>artist</th><th>title</th><th>distance</th>"
        f"<th>listen</th></tr>{medoids}</table>"
        f"<p>Audio links expire {int(AUDIO_LINK_TTL.total_seconds() // 60)} minutes after the "
        "page is opened.</p>"
        f"<h2>Nearest clusters</h2><p>{neighbours}</p>"
        f"<h2>Map</h2><img src='{cluster_id}/map.png' alt='the catalogue in two dimensions' "
        "style='max-width:100%'>"
    )


def _medoid_row(m: dict) -> str:
    audio = "no audio"
    if m["audio_url"]:
        src = html.escape(m["audio_url"], quote=True)
        audio = f"<audio controls preload='none' src='{src}'></audio>"
    return (
        f"<tr><td>{html.escape(m['artist'] or '?')}</td><td>{html.escape(m['title'] or '?')}</td>"
        f"<td>{m['distance']:.3f}</td><td>{audio}</td></tr>"
    )


def map_png(settings: Settings, cluster_id: int) -> bytes:
    """The current run's tracks in two dimensions (PCA of their embeddings), one cluster
    highlighted with its medoids."""
    from sklearn.decomposition import PCA

    from musicvae.ui.charts import cluster_map, png_bytes

    c = _card_row(settings, cluster_id)  # no audio links: the map does not play anything
    with db.engine(settings.database_url).connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT a.track_id, a.cluster_id, e.embedding::text FROM cluster_assignments a "
                "JOIN track_embeddings e ON e.track_id = a.track_id AND e.model_version = :v "
                "WHERE a.run_id = :r ORDER BY a.track_id"
            ),
            {"r": c["run_id"], "v": c["model_version"]},
        ).all()
    embeddings = np.array([json.loads(e) for _, _, e in rows], dtype=np.float32)
    xy = PCA(n_components=2, random_state=0).fit_transform(embeddings)
    medoids = {m["track_id"] for m in c["medoids"] or []}
    return png_bytes(
        cluster_map,
        xy,
        np.array([r[1] for r in rows]),
        cluster_id,
        np.array([r[0] in medoids for r in rows]),
        title=f"Cluster {cluster_id}: {c['name']}",
    )
