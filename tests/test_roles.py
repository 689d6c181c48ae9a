"""The analyst role reads and cannot write; the pipeline role writes rows but changes no schema."""

import uuid

import numpy as np
import psycopg2
import pytest
import sqlalchemy as sa

from musicvae.core import db


def _login(settings, group: str) -> str:
    """A new login in `group`; returns a connection URL for it on the test database."""
    name, password = f"u_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    with db.engine(settings.database_url).begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {name} LOGIN PASSWORD '{password}' IN ROLE {group}")
    url = sa.engine.make_url(settings.database_url).set(username=name, password=password)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def test_an_analyst_reads_tables_and_views_but_cannot_write(settings):
    with psycopg2.connect(_login(settings, "musicvae_reader")) as conn, conn.cursor() as cur:
        for relation in (
            "tracks",
            "current_cluster_assignments",
            "cluster_summary",
            "cluster_changes",
            "model_versions",
            "data_quality_runs",
        ):
            cur.execute(f"SELECT count(*) FROM {relation}")
            assert cur.fetchone() == (0,)
        for statement in (
            "INSERT INTO ingest_runs (run_id, landing) VALUES ('x', 'y')",
            "UPDATE tracks SET status = 'valid'",
            "DELETE FROM model_versions",
            "CREATE TABLE mine (id int)",
            "DROP VIEW current_cluster_assignments",
        ):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(statement)
            conn.rollback()


def test_the_pipeline_role_writes_rows_but_not_the_schema(settings):
    with psycopg2.connect(_login(settings, "musicvae_writer")) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO ingest_runs (run_id, landing) VALUES ('x', 'y')")
        cur.execute("DELETE FROM ingest_runs WHERE run_id = 'x'")
        assert cur.rowcount == 1
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("DROP TABLE tracks")


def test_the_pipeline_role_writes_a_recluster_run_into_its_own_partition(one_track):
    """The run's and the version's tables are made and attached by the schema owner's functions,
    nothing else."""
    from musicvae.catalogue.recluster import (
        assignments_table,
        attach_assignments,
        attach_embeddings,
        embeddings_table,
        write_assignments,
        write_embeddings,
    )

    settings = one_track

    url = sa.engine.make_url(_login(settings, "musicvae_writer")).set(
        drivername="postgresql+psycopg2"
    )
    with sa.create_engine(url).begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO cluster_runs (run_id, model_version, n_clusters, n_tracks) "
                "VALUES ('run-1', 1, 1, 1)"
            )
        )
        conn.execute(sa.text("INSERT INTO clusters VALUES ('run-1', 0, 1, 'c', '{}', '{}', '[0]')"))
        vectors = embeddings_table(conn, 1)
        write_embeddings(conn, vectors, 1, "run-1", ["s/A1"], np.ones((1, 2), np.float32))
        attach_embeddings(conn, vectors, 1)
        table = assignments_table(conn, "run-1")
        write_assignments(conn, table, "run-1", ["s/A1"], [0], [0.5])
        attach_assignments(conn, table, "run-1")
    with (
        sa.create_engine(url).connect() as conn,
        pytest.raises(sa.exc.ProgrammingError, match="must be owner"),
    ):
        conn.exec_driver_sql(f"DROP TABLE {table}, {vectors}")
    with db.engine(settings.database_url).connect() as conn:
        placed = conn.execute(
            sa.text(
                "SELECT c.relname, a.track_id FROM cluster_assignments a "
                "JOIN pg_class c ON c.oid = a.tableoid"
            )
        ).all()
        embedded = conn.execute(
            sa.text(
                "SELECT c.relname, e.track_id FROM track_embeddings e "
                "JOIN pg_class c ON c.oid = e.tableoid"
            )
        ).all()
    assert placed == [(table, "s/A1")]
    assert embedded == [("track_embeddings_v1", "s/A1")]
