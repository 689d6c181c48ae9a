"""The deployment's CeleryExecutor path, for real: Redis broker, a Celery worker, merge_ingest.

The stack starts its own Redis (Debian's redis-server) on a free loopback port, an Airflow
scheduler, api-server and dag-processor configured with the CeleryExecutor, and one
`airflow celery worker`. The scheduler hands the ingest task to Celery; the worker runs it.
"""

import time

import pytest
import sqlalchemy as sa

from musicvae.core import db
from musicvae.local.airflow_client import AirflowClient, utcnow
from musicvae.local.sample.layout import build_sample
from musicvae.local.servers.airflow import AIRFLOW_USER
from musicvae.local.servers.postgres import AIRFLOW_DB
from musicvae.local.stack import Stack

pytestmark = pytest.mark.e2e

TRACKS = 6


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("celery-stack"), executor="celery")
    stack.up()
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="module")
def ingest_run(celery_stack, tmp_path_factory):
    """merge_ingest run through Celery on a separate landing zone given as the run parameter.

    The stack's own landing zone stays empty, so the slot run that unpausing starts finds
    nothing and skips; the triggered run is the one that ingests.
    """
    landing = tmp_path_factory.mktemp("celery-landing")
    build_sample(landing, tracks=TRACKS, seed=5, progress=False)
    client = AirflowClient(celery_stack.api_url, AIRFLOW_USER, celery_stack.airflow_password)
    client.wait_for_dags(["merge_ingest"])
    since = utcnow()
    client.unpause("merge_ingest")
    run_id = client.trigger("merge_ingest", {"landing": str(landing)})
    for other in client.runs_since("merge_ingest", since):
        client.wait("merge_ingest", other, timeout=300)
    return client, run_id


def _rows(url: str, sql: str, **params):
    with db.engine(url).connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def test_the_ingest_task_ran_on_the_celery_worker(celery_stack, ingest_run):
    client, run_id = ingest_run
    assert client.task_states("merge_ingest", run_id) == {"ingest": "success"}
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
            WHERE ti.dag_id = 'merge_ingest' AND ti.run_id = :run_id""",
            run_id=run_id,
        )
        if celery_status == "SUCCESS" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert queue == "default"
    assert celery_id and celery_status == "SUCCESS"
    worker_log = (celery_stack.root / "logs" / "airflow-celery-worker.log").read_text()
    assert celery_id in worker_log and run_id in worker_log


def test_the_ingest_wrote_its_rows(celery_stack, ingest_run):
    _, run_id = ingest_run
    tracks = _rows(celery_stack.database_url(), "SELECT status FROM tracks")
    assert len(tracks) == TRACKS and {s for (s,) in tracks} == {"new"}
    assert _rows(celery_stack.database_url(), "SELECT run_id FROM ingest_runs") == [(run_id,)]


def test_the_stack_runs_the_celery_executor_with_its_own_broker(celery_stack):
    import redis

    env = celery_stack.airflow_env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert f"127.0.0.1:{celery_stack.state.ports['redis']}" in env["AIRFLOW__CELERY__BROKER_URL"]
    assert redis.Redis.from_url(celery_stack.broker_url).ping()
    status = celery_stack.status()
    assert status["redis"].startswith("running") and status["airflow-celery-worker"] == "running"
