"""PostgreSQL access (SQLAlchemy 2 + psycopg2) and the versioned migrations in `sql/migrations`."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import sqlalchemy as sa

from musicvae.core.errors import MigrationError

log = logging.getLogger("musicvae.core.db")

MIGRATION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Any constant works; it only has to be the same for every process that migrates.
MIGRATION_LOCK_ID = 0x6D757369


def sql_dir() -> Path:
    """`sql/` beside the package in a checkout; MUSICVAE_SQL_DIR where the package is installed."""
    return Path(os.environ.get("MUSICVAE_SQL_DIR", Path(__file__).resolve().parents[2] / "sql"))


@cache
def engine(url: str) -> sa.Engine:
    return sa.create_engine(url, pool_pre_ping=True)


def migrations(directory: Path | None = None) -> list[tuple[int, str, str]]:
    """(version, file name, sql) for every migration file, in version order."""
    directory = directory or sql_dir() / "migrations"
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_snake_case.sql")
        found.append((int(match.group(1)), path.name, path.read_text()))
    if not found:
        raise MigrationError(
            f"no migrations in {directory}; set MUSICVAE_SQL_DIR to the sql/ folder"
        )
    return found


def migrate(eng: sa.Engine, directory: Path | None = None) -> list[str]:
    """Apply the migrations that are not applied yet; safe to call from many processes at once."""
    applied_now = []
    with eng.begin() as conn:
        # Concurrent DAG tasks may all call migrate(); the lock makes them take turns.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        conn.execute(
            sa.text(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                "name text NOT NULL, checksum text NOT NULL, applied_at timestamptz DEFAULT now())"
            )
        )
        done = dict(conn.execute(sa.text("SELECT version, checksum FROM schema_migrations")).all())
        for version, name, sql in migrations(directory):
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            if version in done:
                if done[version] != checksum:
                    raise MigrationError(
                        f"migration {name} changed after it was applied; add a new migration "
                        "instead of editing an applied one"
                    )
                continue
            # A DBAPI cursor without parameters: a '%' in the SQL (format(), LIKE) stays literal.
            with conn.connection.cursor() as cur:
                cur.execute(sql)
            conn.execute(
                sa.text(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (:v, :n, :c)"
                ),
                {"v": version, "n": name, "c": checksum},
            )
            applied_now.append(name)
        newest_known = max(v for v, _, _ in migrations(directory))
        if done and max(done) > newest_known:
            raise MigrationError(
                f"the database is at schema version {max(done)}, newer than this code "
                f"({newest_known}); upgrade musicvae"
            )
    for name in applied_now:
        log.info("applied migration %s", name)
    return applied_now


def copy_rows(conn, table: str, columns: tuple[str, ...], rows: Iterable[tuple]) -> int:
    """Bulk-load rows with COPY inside the caller's transaction; returns how many."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    buf.seek(0)
    with conn.connection.cursor() as cur:
        cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)", buf)
    return count
