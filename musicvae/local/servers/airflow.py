"""Airflow 3's processes (api-server, scheduler, dag-processor, triggerer, and with the
CeleryExecutor one Celery worker): their environment, metadata database and login, and the
OpenLineage events they write."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
from pathlib import Path

from musicvae.core.config import Settings
from musicvae.core.errors import StackError
from musicvae.local.servers.postgres import AIRFLOW_DB, Postgres
from musicvae.local.servers.processes import Processes, wait
from musicvae.local.servers.redis import RedisBroker
from musicvae.retrain.queues import (
    TRAINING_POOL,
    TRAINING_POOL_DESCRIPTION,
    TRAINING_POOL_SLOTS,
    TRAINING_QUEUE,
)

log = logging.getLogger("musicvae.local.stack")

AIRFLOW_USER = "admin"
EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}
# The triggerer runs deferred tasks (deferrable operators and sensors), as the compose
# deployment does.
AIRFLOW_PROCESSES = (
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)
# OpenLineage events from every task: musicvae's extractor reports what each task read and
# wrote (musicvae/core/lineage.py); the source-code facet would only repeat the DAG files.
LINEAGE_SETTINGS = {
    "AIRFLOW__OPENLINEAGE__NAMESPACE": "musicvae",
    "AIRFLOW__OPENLINEAGE__EXTRACTORS": "musicvae.core.lineage_extractor.TaskFlowExtractor",
    "AIRFLOW__OPENLINEAGE__DISABLE_SOURCE_CODE": "true",
}


def worker_names(workers: int) -> list[str]:
    """The Celery workers' process names: the first keeps the name it always had."""
    return ["airflow-celery-worker", *(f"airflow-celery-worker-{i}" for i in range(2, workers + 1))]


def worker_log_port(name: str) -> str:
    """The port name of a worker's log server: `logs` for the first, `logs_<i>` after it."""
    return "logs" if name == "airflow-celery-worker" else "logs_" + name.rsplit("-", 1)[1]


def worker_hostname() -> str:
    """Airflow's hostname_callable in the stack's Celery workers: several workers on one machine
    each put their own name on the task instances they run, as separate machines would."""
    return os.environ.get("MUSICVAE_WORKER_HOSTNAME") or socket.getfqdn()


class Airflow:
    """Airflow with its home in `root/airflow`, its metadata in `postgres`'s AIRFLOW_DB and,
    with the CeleryExecutor, `broker` as the Celery broker."""

    def __init__(
        self,
        root: Path,
        repo: Path,
        executor: str,
        ports: dict[str, int],
        secrets: dict[str, str],
        processes: Processes,
        bin: Path,
        postgres: Postgres,
        broker: RedisBroker,
        workers: int = 1,
    ):
        self.root = root
        self.repo = repo
        self.executor = executor
        self.ports = ports
        self.secrets = secrets
        self.processes = processes
        self.bin = bin
        self.postgres = postgres
        self.broker = broker
        self.workers = workers

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def password(self) -> str:
        return self.secrets["airflow_password"]

    def env(self, settings: Settings) -> dict[str, str]:
        """The environment of Airflow's processes, with `settings` for musicvae's tasks."""
        home = self.root / "airflow"
        env = {
            **os.environ,
            **settings.as_env(),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.repo / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.repo / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": EXECUTORS[self.executor],
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.postgres.url(AIRFLOW_DB),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.ports["api"]),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": self.secrets["jwt_secret"],
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.ports["logs"]),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.ports["trigger_logs"]),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{AIRFLOW_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__CORE__DAG_DISCOVERY_SAFE_MODE": "False",
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            **LINEAGE_SETTINGS,
        }
        # Lineage goes to a file per event under .stack/lineage/, unless the user's environment
        # names another transport (AIRFLOW__OPENLINEAGE__TRANSPORT, e.g. HTTP to Marquez).
        env.setdefault("AIRFLOW__OPENLINEAGE__TRANSPORT", self.lineage_transport())
        if self.executor == "celery":
            env |= {
                "AIRFLOW__CELERY__BROKER_URL": self.broker.url,
                # Celery's own record of every task it ran, beside Airflow's metadata.
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.postgres.url(AIRFLOW_DB),
                # Two task slots on one worker; with several, one each, and no worker reserves a
                # task it cannot start yet, so the queue spreads over the workers.
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2" if self.workers == 1 else "1",
                "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                # The workers' slots bound what runs; the executor's parallelism bounds only what
                # is sent to the broker. At 2 a worker that finished a shard waited for the
                # scheduler to see a free slot before its next shard was sent (seconds per
                # shard); with the shards queued in the broker it takes the next one at once.
                "AIRFLOW__CORE__PARALLELISM": "32",
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": "default",
            }
        return env

    @property
    def lineage_dir(self) -> Path:
        return self.root / "lineage"

    def lineage_transport(self) -> str:
        self.lineage_dir.mkdir(parents=True, exist_ok=True)
        path = str(self.lineage_dir / "events")
        return json.dumps({"type": "file", "log_file_path": path, "append": False})

    def start(self, settings: Settings) -> None:
        """Start the processes that are not running; wait for the api-server; add the pool."""
        home = self.root / "airflow"
        home.mkdir(exist_ok=True)
        pw_file = home / "passwords.json"
        pw_file.write_text(json.dumps({AIRFLOW_USER: self.password}))
        pw_file.chmod(0o600)
        env = self.env(settings)
        airflow = str(self.bin / "airflow")
        if not self.processes.running("airflow-scheduler"):
            log.info("migrating Airflow's metadata database")
            result = subprocess.run(
                [airflow, "db", "migrate"], env=env, capture_output=True, text=True
            )
            if result.returncode != 0:
                raise StackError(f"airflow db migrate failed:\n{result.stderr[-3000:]}")
        for name in AIRFLOW_PROCESSES:
            if not self.processes.running(name):
                self.processes.spawn(name, [airflow, name.removeprefix("airflow-")], env)
        if self.executor == "celery":
            self._start_workers(airflow, env)
        import urllib.request

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.api_url}/api/v2/monitor/health", timeout=5) as r:
                return r.status == 200

        wait(healthy, "Airflow api-server", 180, self.root / "logs" / "airflow-api-server.log")
        log.info("Airflow answers at %s", self.api_url)
        from musicvae.local.airflow_client import AirflowClient

        client = AirflowClient(self.api_url, AIRFLOW_USER, self.password)
        client.ensure_pool(TRAINING_POOL, TRAINING_POOL_SLOTS, TRAINING_POOL_DESCRIPTION)

    def _start_workers(self, airflow: str, env: dict[str, str]) -> None:
        queues = ",".join(sorted({"default", TRAINING_QUEUE}))
        for i, name in enumerate(worker_names(self.workers), 1):
            if self.processes.running(name):
                continue
            own = {
                "MUSICVAE_WORKER_HOSTNAME": f"worker-{i}.{socket.getfqdn()}",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.ports[worker_log_port(name)]),
            }
            cmd = [airflow, "celery", "worker", "--queues", queues]
            self.processes.spawn(name, [*cmd, "--celery-hostname", f"worker-{i}@%h"], env | own)

    def stop(self) -> None:
        # Workers first, so none picks up a task while the scheduler shuts down.
        workers = sorted(p.stem for p in self.root.glob("airflow-celery-worker*.pid"))
        for name in (*workers, *reversed(AIRFLOW_PROCESSES)):
            self.processes.stop(name)
