"""Schema migrations against the real PostgreSQL server."""

import shutil

import pytest
import sqlalchemy as sa

from musicvae import db
from musicvae.errors import MigrationError


def test_migrations_are_applied_once_and_create_the_schema(settings):
    eng = db.engine(settings.database_url)
    assert db.migrate(eng) == []  # the fixture already migrated: nothing left to apply
    with eng.connect() as conn:
        tables = set(
            conn.execute(
                sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
        )
        views = set(
            conn.execute(
                sa.text("SELECT viewname FROM pg_views WHERE schemaname = 'public'")
            ).scalars()
        )
        vector = conn.execute(
            sa.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        ).scalar()
    assert {
        "tracks",
        "model_versions",
        "track_embeddings",
        "cluster_assignments",
        "clusters",
        "cluster_runs",
        "data_quality_runs",
        "schema_migrations",
    } <= tables
    assert "current_cluster_assignments" in views
    assert vector is not None


def test_a_new_migration_is_applied_and_an_edited_one_is_refused(settings, tmp_path):
    eng = db.engine(settings.database_url)
    folder = tmp_path / "migrations"
    shutil.copytree(db.sql_dir() / "migrations", folder)
    (folder / "9999_extra.sql").write_text("CREATE TABLE extra (id int);")
    assert db.migrate(eng, folder) == ["9999_extra.sql"]
    assert db.migrate(eng, folder) == []

    (folder / "9999_extra.sql").write_text("CREATE TABLE extra (id bigint);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        db.migrate(eng, folder)


def test_a_database_newer_than_the_code_is_refused(settings, tmp_path):
    eng = db.engine(settings.database_url)
    folder = tmp_path / "migrations"
    shutil.copytree(db.sql_dir() / "migrations", folder)
    (folder / "9999_extra.sql").write_text("SELECT 1;")
    db.migrate(eng, folder)
    with pytest.raises(MigrationError, match="newer than this code"):
        db.migrate(eng)
