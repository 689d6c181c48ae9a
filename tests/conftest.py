"""Shared fixtures: one real PostgreSQL + S3 server pair per test session, fresh state per test."""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
import warnings
from dataclasses import replace
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SEED_CSV = REPO.parent / "shared" / "merge" / "seed_bimodal_balanced_metadata.csv"

logging.getLogger("urllib3").setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def stack_dir(request):
    """Makes a new folder for a local stack, outside pytest's temporary root: each pytest
    session sets that root back to mode 0700, and run as root, a stack's PostgreSQL runs as
    another user, who would then lose its data folder to the next session started beside
    this one. The folders are kept when a test failed, for their logs."""
    root = Path(tempfile.mkdtemp(prefix="musicvae-stacks-"))
    yield lambda name: Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    if request.session.testsfailed:
        warnings.warn(f"the stacks of this session are kept for their logs in {root}", stacklevel=1)
    else:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def servers(stack_dir):
    """PostgreSQL 18 + pgvector and an S3 server, started from the venv's wheels on loopback."""
    from musicvae.local.stack import Stack

    stack = Stack(stack_dir("stack"))
    stack.up(airflow=False)
    yield stack
    stack.down()


@pytest.fixture
def new_settings(servers):
    """A factory of Settings, each for a new migrated database and a new bucket."""
    from musicvae.core import db
    from musicvae.core.storage import ObjectStore

    def make():
        name = f"t_{uuid.uuid4().hex[:12]}"
        s = replace(
            servers.settings(),
            database_url=servers.create_database(name),
            bucket=name.replace("_", "-"),
        )
        db.migrate(db.engine(s.database_url))
        ObjectStore(s).ensure_bucket()
        return s

    return make


@pytest.fixture
def settings(new_settings):
    """Settings for a new, migrated database and a new bucket: tests cannot see each other."""
    return new_settings()


@pytest.fixture
def scan(settings):
    """Reads a landing zone's MERGE subsets as ingest's plan does, in a transaction held for
    the test: the file list lives in its temporary tables."""
    from musicvae.core import db
    from musicvae.ingest.merge import Listing

    with db.engine(settings.database_url).begin() as conn:
        yield lambda landing: Listing(conn, landing).subsets()


@pytest.fixture(scope="session")
def sample_catalogue(tmp_path_factory):
    """A small MERGE-layout catalogue with the deliberate defects; built once, copied per use."""
    from musicvae.local.sample.layout import build_sample

    root = tmp_path_factory.mktemp("sample")
    build_sample(root, tracks=24, seed=7, defects=True, progress=False)
    return root


@pytest.fixture
def landing(sample_catalogue, tmp_path):
    target = tmp_path / "landing"
    shutil.copytree(sample_catalogue, target)
    return target


@pytest.fixture
def one_track(settings):
    """A migrated catalogue with one valid track and one model version."""
    import sqlalchemy as sa

    from musicvae.core import db

    with db.engine(settings.database_url).begin() as conn:
        conn.execute(sa.text("INSERT INTO ingest_runs (run_id, landing) VALUES ('i', 'x')"))
        conn.execute(
            sa.text(
                "INSERT INTO tracks (track_id, subset, song_id, status, ingest_run_id) "
                "VALUES ('s/A1', 's', 'A1', 'valid', 'i')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO model_versions (snapshot_id, n_tracks, params, params_hash, "
                "code_version, artifact_prefix) VALUES ('s', 1, '{}', 'p', 'c', 'm')"
            )
        )
    return settings
