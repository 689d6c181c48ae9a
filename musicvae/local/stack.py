"""The local stack: PostgreSQL 18 + pgvector, an S3 server and Airflow 3, all on loopback.

Every server comes from a wheel in the project's venv (no Docker engine needed). State, logs,
ports and generated secrets live under one folder (default `.stack/`), so `up` after `up`
reuses what is there and `down` stops exactly what `up` started.

Airflow runs with the LocalExecutor by default. `executor="celery"` runs the deployment's
CeleryExecutor instead: the stack then also starts a Redis broker (Debian's `redis-server`)
and one Celery worker, so the Celery path can be exercised without Docker.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

from musicvae.core.config import Settings
from musicvae.core.errors import ConfigurationError, StackError
from musicvae.local.servers.airflow import (
    AIRFLOW_PROCESSES,
    AIRFLOW_USER,
    EXECUTORS,
    Airflow,
    worker_log_port,
    worker_names,
)
from musicvae.local.servers.postgres import CATALOGUE_DB, Postgres
from musicvae.local.servers.processes import Processes, assign_ports
from musicvae.local.servers.redis import RedisBroker
from musicvae.local.servers.s3 import S3

log = logging.getLogger("musicvae.local.stack")

REPO_ROOT = Path(__file__).resolve().parents[2]
PORT_NAMES = (
    "postgres",
    "s3",
    "s3_master",
    "s3_volume",
    "s3_filer",
    "s3_admin",
    "api",
    "logs",
    "trigger_logs",
    "redis",
)


@dataclass
class StackState:
    ports: dict[str, int] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    landing: str = ""  # empty: the stack's own folder

    @classmethod
    def load(cls, path: Path) -> StackState:
        if path.exists():
            data = json.loads(path.read_text())
            return cls(
                ports=data["ports"], secrets=data["secrets"], landing=data.get("landing", "")
            )
        return cls()

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        data = {"ports": self.ports, "secrets": self.secrets, "landing": self.landing}
        tmp.write_text(json.dumps(data, indent=2))
        tmp.chmod(0o600)
        tmp.replace(path)


class Stack:
    """The local servers under `root`; `up()` is idempotent, `down()` stops them all."""

    def __init__(
        self,
        root: Path | str = REPO_ROOT / ".stack",
        repo: Path = REPO_ROOT,
        executor="local",
        workers: int = 1,
    ):
        if executor not in EXECUTORS:
            raise StackError(f"unknown executor {executor!r}; choose one of {sorted(EXECUTORS)}")
        if workers != 1 and executor != "celery":
            raise StackError("several workers need the celery executor (executor='celery')")
        self.executor = executor
        self.workers = workers
        self.root = Path(root).resolve()
        self.repo = repo
        self.state_file = self.root / "stack.json"
        self.state = StackState.load(self.state_file)
        self.bin = Path(sys.executable).parent
        # The servers share the state's dicts, which _ensure_ports_and_secrets fills in place.
        ports, keys = self.state.ports, self.state.secrets
        self.processes = procs = Processes(self.root)
        self.postgres = Postgres(self.root, ports, keys)
        self.s3 = S3(self.root, ports, procs, self.bin)
        self.redis = RedisBroker(self.root, ports, keys, procs)
        self.airflow = Airflow(
            self.root,
            repo,
            executor,
            ports,
            keys,
            procs,
            self.bin,
            self.postgres,
            self.redis,
            workers,
        )

    # -- addresses -------------------------------------------------------------------------

    def database_url(self, db: str = CATALOGUE_DB, driver: str = "postgresql+psycopg2") -> str:
        return self.postgres.url(db, driver)

    @property
    def api_url(self) -> str:
        return self.airflow.api_url

    @property
    def default_landing(self) -> Path:
        return self.root / "landing"

    @property
    def landing(self) -> str:
        """The landing zone the DAGs read: the one `up` was last given, else the stack's own."""
        return self.state.landing or str(self.default_landing)

    def settings(self) -> Settings:
        return Settings(
            database_url=self.database_url(),
            s3_endpoint=self.s3.endpoint,
            s3_access_key=self.state.secrets["s3_access_key"],
            s3_secret_key=self.state.secrets["s3_secret_key"],
            landing=str(self.landing),
        )

    @property
    def broker_url(self) -> str:
        return self.redis.url

    @property
    def airflow_password(self) -> str:
        return self.airflow.password

    def create_database(self, name: str) -> str:
        """A new, empty database on the stack's server (tests, benchmarks); returns its URL."""
        return self.postgres.create_database(name)

    def airflow_env(self) -> dict[str, str]:
        return self.airflow.env(self.settings())

    @property
    def lineage_dir(self) -> Path:
        return self.airflow.lineage_dir

    def lineage_transport(self) -> str:
        return self.airflow.lineage_transport()

    # -- lifecycle -------------------------------------------------------------------------

    def up(self, airflow: bool = True, landing: str | None = None) -> None:
        """Start what is not running. `landing` (a folder or s3://bucket/prefix) becomes the
        landing zone the DAGs read, and stays so until another is given."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        self.default_landing.mkdir(exist_ok=True)
        if landing and self._use_landing(landing) and airflow:
            # Running Airflow processes hold the old value in their environment.
            self.airflow.stop()
        self._ensure_ports_and_secrets()
        self.postgres.start()
        self.s3.start(self.settings())
        from musicvae.core import db, storage

        db.migrate(db.engine(self.database_url()))
        storage.ObjectStore(self.settings()).ensure_bucket()
        if airflow:
            if self.executor == "celery":
                self.redis.start()
            self.airflow.start(self.settings())
        self._write_env_file()

    def _use_landing(self, landing: str) -> bool:
        """Record the landing zone; True when it differs from the one in use."""
        if not landing.startswith("s3://"):
            path = Path(landing).expanduser().resolve()
            if not path.is_dir():
                raise ConfigurationError(
                    f"MUSICVAE_LANDING={landing!r} is not a folder. Point it at the folder that "
                    "holds your unzipped MERGE_* folders (or at one of them), or at "
                    "s3://bucket/prefix."
                )
            landing = str(path)
        changed = landing != self.landing
        self.state.landing = "" if landing == str(self.default_landing) else landing
        if changed:
            log.info("landing zone: %s", landing)
        return changed

    def down(self) -> None:
        self.airflow.stop()
        self.redis.stop()
        self.s3.stop()
        self.postgres.stop()

    def status(self) -> dict[str, str]:
        out: dict[str, str] = {}
        out["postgres"] = self._describe(self.postgres.running, "postgres")
        for name, port in (
            ("s3", "s3"),
            ("airflow-api-server", "api"),
            ("airflow-scheduler", None),
            ("airflow-dag-processor", None),
            ("airflow-triggerer", None),
            *((("redis", "redis"),) if self._celery else ()),
            *((name, None) for name in (worker_names(self.workers) if self._celery else ())),
        ):
            out[name] = self._describe(self.processes.running(name), port)
        out["landing zone"] = self.landing
        return out

    def _describe(self, running: bool, port_name: str | None) -> str:
        if not running:
            return "stopped"
        port = self.state.ports.get(port_name) if port_name else None
        return f"running on 127.0.0.1:{port}" if port else "running"

    # -- ports and secrets -----------------------------------------------------------------

    def _ensure_ports_and_secrets(self) -> None:
        workers = [worker_log_port(name) for name in worker_names(self.workers)[1:]]
        assign_ports(self.state.ports, (*PORT_NAMES, *workers), self._owned_port)
        for name in (
            "pg_password",
            "s3_secret_key",
            "airflow_password",
            "jwt_secret",
            "redis_password",
        ):
            self.state.secrets.setdefault(name, secrets.token_urlsafe(18))
        self.state.secrets.setdefault("s3_access_key", "musicvae" + secrets.token_hex(4))
        self.state.save(self.state_file)

    def _owned_port(self, name: str) -> bool:
        """True when the port belongs to a server of this stack that is already running."""
        if name == "postgres":
            return self.postgres.running
        if name.startswith("s3"):
            return self.s3.running
        if name in ("api", "logs", "trigger_logs") or name.startswith("logs_"):
            running = self.processes.running
            return any(running(p) for p in (*AIRFLOW_PROCESSES, *worker_names(self.workers)))
        if name == "redis":
            return self.redis.running
        return False

    @property
    def _celery(self) -> bool:
        return self.executor == "celery" or self.processes.running("airflow-celery-worker")

    def _write_env_file(self) -> None:
        lines = [f"export {k}={v}" for k, v in self.settings().as_env().items()]
        lines += [
            f"export MUSICVAE_AIRFLOW_URL={self.api_url}",
            f"export MUSICVAE_AIRFLOW_USER={AIRFLOW_USER}",
            f"export MUSICVAE_AIRFLOW_PASSWORD={self.airflow_password}",
        ]
        path = self.root / "env"
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
