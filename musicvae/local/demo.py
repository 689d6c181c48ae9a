"""`make demo`: the whole pipeline on a sample catalogue, driven through Airflow's scheduler."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import sqlalchemy as sa

from musicvae.core import db
from musicvae.local.airflow_client import AirflowClient, utcnow
from musicvae.local.servers.airflow import AIRFLOW_USER
from musicvae.local.stack import Stack

log = logging.getLogger("musicvae.local.demo")

DAGS = (
    "merge_ingest",
    "merge_validate",
    "catalogue_assign",
    "musicvae_retrain",
    "catalogue_recluster",
)
EXAMPLE_QUERY = (
    "SELECT cluster_id, cluster_label, count(*) AS tracks "
    "FROM current_cluster_assignments GROUP BY 1, 2 ORDER BY 1"
)


@dataclass
class PipelineRuns:
    """The DAG runs one pass of the pipeline went through, by DAG id."""

    runs: dict[str, str]


def run_pipeline(
    client: AirflowClient, retrain_conf: dict | None, timeout: float = 1800
) -> PipelineRuns:
    """Trigger ingest and retrain (unless `retrain_conf` is None) through the REST API; follow
    what their Assets trigger."""
    client.wait_for_dags(list(DAGS))
    since = utcnow()
    # Unpausing a scheduled DAG starts its latest slot at once. Let the retrain's slot run (and
    # skip, on an empty catalogue) before any data lands, so it cannot race the demo's own run.
    client.unpause("musicvae_retrain")
    for run_id in client.runs_since("musicvae_retrain", since):
        client.wait("musicvae_retrain", run_id, timeout=timeout)
    for dag_id in DAGS:
        client.unpause(dag_id)
    runs: dict[str, str] = {}
    run_and_follow(client, "merge_ingest", {}, runs, since, timeout)
    if retrain_conf is not None:
        run_and_follow(client, "musicvae_retrain", retrain_conf, runs, since, timeout)
    return PipelineRuns(runs)


def run_and_follow(
    client: AirflowClient, dag_id: str, conf: dict, runs: dict, since: str, timeout: float
) -> None:
    run_id = client.trigger(dag_id, conf)
    log.info("triggered %s (%s)", dag_id, run_id)
    # Unpausing a scheduled DAG also starts its latest slot, and that run may be the one that
    # does the work (ours then finds nothing new): wait for all of them, follow all their events.
    for other in client.runs_since(dag_id, since):
        client.wait(dag_id, other, timeout=timeout)
    runs[dag_id] = run_id
    pending = client.triggered_runs(dag_id, since)
    while pending:
        next_dag, next_run = pending.pop(0)
        client.wait(next_dag, next_run, timeout=timeout)
        runs[next_dag] = next_run
        pending += client.triggered_runs(next_dag, since, next_run)


def run_demo(
    stack: Stack,
    tracks: int = 200,
    epochs: int | None = None,
    seed: int = 0,
    landing: str | None = None,
) -> str:
    """The pipeline on a synthetic sample, or on the user's own landing zone when one is given
    (a MERGE download is never written into)."""
    from musicvae.local.sample.layout import build_sample

    started = time.monotonic()
    stack.up(landing=landing)
    if stack.landing == str(stack.default_landing):
        log.info("building a %d-track MERGE-layout sample in %s", tracks, stack.landing)
        build_sample(stack.default_landing, tracks=tracks, seed=seed, defects=True)
    else:
        log.info("ingesting your landing zone %s (no sample is built)", stack.landing)
    client = AirflowClient(stack.api_url, AIRFLOW_USER, stack.airflow_password)
    runs = run_pipeline(client, {"epochs": epochs, "seed": seed})
    report = summary(stack, runs)
    return report + f"\nThe demo took {time.monotonic() - started:.0f} s.\n"


def summary(stack: Stack, runs: PipelineRuns) -> str:
    eng = db.engine(stack.database_url())
    with eng.connect() as conn:
        status = dict(
            conn.execute(sa.text("SELECT status, count(*) FROM tracks GROUP BY status")).all()
        )
        rejected = conn.execute(sa.text("SELECT count(*) FROM ingest_rejections")).scalar()
        reasons = conn.execute(
            sa.text(
                "SELECT track_id, status_reason FROM tracks WHERE status = 'quarantined' "
                "ORDER BY track_id LIMIT 8"
            )
        ).all()
        model = conn.execute(
            sa.text(
                "SELECT version, n_tracks, params, metrics, promotion FROM model_versions "
                "ORDER BY version DESC LIMIT 1"
            )
        ).first()
        clusters = conn.execute(
            sa.text(
                "SELECT c.cluster_id, c.size, c.label, c.top_genres FROM clusters c "
                "JOIN (SELECT run_id FROM cluster_runs ORDER BY created_at DESC LIMIT 1) r "
                "USING (run_id) ORDER BY c.cluster_id"
            )
        ).all()
    lines = [
        "",
        "=" * 78,
        "musicvae demo: done",
        "=" * 78,
        "DAG runs: " + ", ".join(f"{d}={r}" for d, r in runs.runs.items()),
        f"Tracks: {status.get('valid', 0)} valid, {status.get('quarantined', 0)} "
        f"quarantined, {status.get('new', 0)} awaiting validation; {rejected} files or rows "
        "rejected at ingest (table ingest_rejections)",
    ]
    lines += [f"  quarantined {t}: {r}" for t, r in reasons]
    if model:
        m = model.metrics
        lines.append(
            f"Model version {model.version}: trained on {model.n_tracks} tracks, "
            f"{model.params.get('epochs')} epochs max ({m.get('epochs_run')} run), best val loss "
            f"{m.get('best_val_loss')}; KMeans vs genre NMI {m.get('genre_nmi')} "
            f"ARI {m.get('genre_ari')} purity {m.get('genre_purity')}"
        )
        if model.promotion:
            lines.append(f"  promotion: {model.promotion['reason']}")
        evaluation = m.get("evaluation", {})
        if evaluation:
            lines.append(
                "  research table (genre, + KMeans, NMI mean over 3 seeds): "
                + ", ".join(
                    # The audio baseline is "spectral" or "front end", as the model's input is.
                    f"{key.split('/')[1]} {value}"
                    for key, value in evaluation.items()
                    if key.startswith("genre/") and key.endswith("/kmeans/nmi")
                )
            )
            lines.append(f"  evaluation report: {stack.api_url}/musicvae/models/{model.version}/")
    lines.append("Clusters (latest run):")
    lines += [
        f"  {c.cluster_id:>3}  {c.size:>4} tracks  {c.label:<28} "
        + ", ".join(f"{g} {n}" for g, n in sorted(c.top_genres.items(), key=lambda kv: -kv[1]))
        for c in clusters
    ]
    psql_url = stack.database_url(driver="postgresql")
    lines += [
        "",
        f"Airflow UI:  {stack.api_url}   login: {AIRFLOW_USER} / {stack.airflow_password}",
        "Query the clusters with SQL:",
        f'  psql "{psql_url}" -c "{EXAMPLE_QUERY}"',
        "Stop everything: make demo-stop",
    ]
    return "\n".join(lines)
