"""The deployment's CeleryExecutor path, for real: Redis broker, two Celery workers, mapped shards.

The stack starts its own Redis (Debian's redis-server) on a free loopback port, an Airflow
scheduler, api-server and dag-processor configured with the CeleryExecutor, and two
`airflow celery worker`s, with shards of two tracks. merge_ingest runs through Celery; then a
champion is trained in this process on what it ingested, and catalogue_recluster's embedding
shards spread over both workers, with a result equal to a single-shard run. One stack serves
both: an Airflow stack is the slowest thing the suite starts.
"""

import time
from datetime import datetime

import pytest
import sqlalchemy as sa

from musicvae.core import db
from musicvae.local.airflow_client import AirflowClient, utcnow
from musicvae.local.sample.layout import build_sample
from musicvae.local.servers.airflow import AIRFLOW_USER, worker_names
from musicvae.local.servers.postgres import AIRFLOW_DB
from musicvae.local.stack import Stack

pytestmark = pytest.mark.e2e

TRACKS = 8
SHARD_SIZE = 2


@pytest.fixture(scope="module")
def celery_stack(stack_dir):
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MUSICVAE_SHARD_SIZE", str(SHARD_SIZE))  # the workers inherit it
        env.setenv("MUSICVAE_EMBED_SHARD_SIZE", str(SHARD_SIZE))
        stack = Stack(stack_dir("celery-stack"), executor="celery", workers=2)
        stack.up()
    try:
        yield stack
    finally:
        stack.down()


def _rows(url: str, sql: str, **params):
    with db.engine(url).connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def _mapped(client: AirflowClient, dag_id: str, run_id: str, task_id: str) -> list[dict]:
    """A run's instances of one mapped task, one per shard."""
    return [ti for ti in client.task_instances(dag_id, run_id) if ti["task_id"] == task_id]


@pytest.fixture(scope="module")
def ingest_run(celery_stack, tmp_path_factory):
    """merge_ingest run through Celery on a separate landing zone given as the run parameter,
    with the catalogue's rows as that run left them (the recluster below validates them).

    The stack's own landing zone stays empty, so the slot run that unpausing starts finds
    nothing and skips; the triggered run is the one that ingests.
    """
    landing = tmp_path_factory.mktemp("celery-landing")
    build_sample(landing, tracks=TRACKS, seed=6, progress=False)
    client = AirflowClient(celery_stack.api_url, AIRFLOW_USER, celery_stack.airflow_password)
    client.wait_for_dags(["merge_ingest"])
    since = utcnow()
    client.unpause("merge_ingest")
    run_id = client.trigger("merge_ingest", {"landing": str(landing)})
    for other in client.runs_since("merge_ingest", since):
        client.wait("merge_ingest", other, timeout=300)
    url = celery_stack.database_url()
    rows = {
        "tracks": _rows(url, "SELECT status FROM tracks"),
        "ingest_runs": _rows(url, "SELECT run_id FROM ingest_runs"),
    }
    return client, run_id, landing, rows


def test_the_ingest_task_ran_on_a_celery_worker(celery_stack, ingest_run):
    client, run_id, _, _ = ingest_run
    assert client.task_states("merge_ingest", run_id) == {
        "shards": "success",
        "upload": "success",
        "ingest": "success",
    }
    assert len(_mapped(client, "merge_ingest", run_id, "upload")) == TRACKS // SHARD_SIZE
    # The scheduler records the Celery task id it sent; Celery's result backend holds that
    # task's outcome, written by the worker when it finished. The task reports success to
    # Airflow before its Celery task returns, so the backend may still say STARTED briefly.
    deadline = time.monotonic() + 60
    while True:
        [(queue, celery_id, celery_status)] = _rows(
            celery_stack.database_url(AIRFLOW_DB),
            """
            SELECT ti.queue, ti.external_executor_id, m.status
            FROM task_instance ti
            LEFT JOIN celery_taskmeta m ON m.task_id = ti.external_executor_id
            WHERE ti.dag_id = 'merge_ingest' AND ti.run_id = :run_id AND ti.task_id = 'ingest'""",
            run_id=run_id,
        )
        if celery_status == "SUCCESS" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert queue == "default"
    assert celery_id and celery_status == "SUCCESS"
    logs = celery_stack.root / "logs"
    names = worker_names(celery_stack.workers)
    worker_logs = [(logs / f"{name}.log").read_text() for name in names]
    assert any(celery_id in log and run_id in log for log in worker_logs)


def test_the_ingest_wrote_its_rows(ingest_run):
    _, run_id, _, rows = ingest_run
    assert len(rows["tracks"]) == TRACKS and {s for (s,) in rows["tracks"]} == {"new"}
    assert rows["ingest_runs"] == [(run_id,)]


def test_the_stack_runs_the_celery_executor_with_its_own_broker(celery_stack):
    import redis

    env = celery_stack.airflow_env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert f"127.0.0.1:{celery_stack.state.ports['redis']}" in env["AIRFLOW__CELERY__BROKER_URL"]
    assert redis.Redis.from_url(celery_stack.broker_url).ping()
    status = celery_stack.status()
    assert {status[name] for name in worker_names(celery_stack.workers)} == {"running"}
    assert status["redis"].startswith("running")


# -- a recluster's shards spread over the two workers -----------------------------------------


@pytest.fixture(scope="module")
def two_workers(celery_stack, ingest_run):
    """A champion trained in this process on the catalogue merge_ingest wrote (its ingest
    finds nothing new), and catalogue_recluster run through the workers."""
    from .champion import train_champion

    client, _, landing, _ = ingest_run
    train_champion(celery_stack.settings(), landing, n_clusters=3)
    client.wait_for_dags(["catalogue_recluster"])
    client.unpause("catalogue_recluster")
    run_id = client.trigger("catalogue_recluster")
    client.wait("catalogue_recluster", run_id, timeout=600)
    return celery_stack, client, run_id


def test_the_shards_ran_on_both_workers(two_workers):
    stack, client, run_id = two_workers
    embeds = _mapped(client, "catalogue_recluster", run_id, "embed")
    assert sorted(ti["map_index"] for ti in embeds) == list(range(TRACKS // SHARD_SIZE))
    assert {ti["state"] for ti in embeds} == {"success"}
    hosts = {ti["hostname"] for ti in embeds}
    assert len(hosts) == 2 and all(h.startswith(("worker-1.", "worker-2.")) for h in hosts)
    assert stack.status()["airflow-celery-worker-2"] == "running"


def test_every_shard_is_sent_to_the_broker_before_one_ends(two_workers):
    """A worker that finishes a shard takes the next from the broker; it does not wait for the
    scheduler to see a free executor slot and send one (AIRFLOW__CORE__PARALLELISM above the
    slots)."""
    _, client, run_id = two_workers
    embeds = _mapped(client, "catalogue_recluster", run_id, "embed")
    assert len(embeds) > 2  # more shards than the two workers have slots
    queued = [datetime.fromisoformat(ti["queued_when"]) for ti in embeds]
    ended = [datetime.fromisoformat(ti["end_date"]) for ti in embeds]
    assert max(queued) < min(ended)


def test_the_sharded_run_equals_a_single_shard_run(two_workers):
    from musicvae.catalogue.recluster import run_recluster
    from musicvae.catalogue.shards import embed, plan, prefix
    from musicvae.core.storage import ObjectStore

    stack, _, run_id = two_workers
    settings = stack.settings()
    # The run's shards were scratch: its recluster task removed them once it had written.
    assert list(ObjectStore(settings).list_keys(prefix(run_id) + "/")) == []
    single = [embed(settings, s) for s in plan(settings, "single-shard", size=1000)]
    assert [s["n_items"] for s in single] == [TRACKS]
    run_recluster(settings, "single-shard", shards=single)
    assignments = (
        "SELECT track_id, cluster_id, round(distance::numeric, 4) FROM cluster_assignments "
        "WHERE run_id = :r ORDER BY track_id"
    )
    url = stack.database_url()
    sharded = _rows(url, assignments, r=run_id)
    assert len(sharded) == TRACKS
    assert _rows(url, assignments, r="single-shard") == sharded
