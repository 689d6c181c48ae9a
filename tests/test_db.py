"""Schema migrations against the real PostgreSQL server."""

import hashlib
import shutil

import numpy as np
import psycopg2
import pytest
import sqlalchemy as sa

from musicvae.catalogue import recluster
from musicvae.core import db
from musicvae.core.errors import MigrationError

TABLE = "cluster_assignments"


def _partition_name(run: str) -> str:
    return f"{TABLE}_{hashlib.md5(run.encode()).hexdigest()[:16]}"


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


def test_upgrading_a_populated_database_keeps_its_data(
    new_settings, landing, tmp_path, monkeypatch
):
    """A catalogue at the previous schema version, with a full recluster in it, upgrades cleanly."""

    settings = new_settings()
    eng = db.engine(settings.database_url)
    with eng.begin() as conn:  # back to an empty schema, then only the older migrations
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    every = db.migrations()
    previous = tmp_path / "sql" / "migrations"
    previous.mkdir(parents=True)
    for _, name, sql in every[:-1]:
        (previous / name).write_text(sql)
    # Every stage migrates before it writes: run them all as the previous release would, which
    # COPYed embeddings straight into an unpartitioned track_embeddings and indexed them there.
    monkeypatch.setenv("MUSICVAE_SQL_DIR", str(previous.parent))
    with monkeypatch.context() as previous_release:
        previous_release.setattr(recluster, "embeddings_table", lambda conn, v: "track_embeddings")
        previous_release.setattr(recluster, "attach_embeddings", lambda conn, table, v: None)
        previous_release.setattr(recluster, "build_hnsw_index", _previous_hnsw_index)
        # This code's validation stages its suites' columns (0015); the previous release's held
        # them in memory. The population gets the table for the while, and the upgrade makes it
        # (once a later migration is the last, 0015 is among the previous ones: drop these lines).
        assert every[-1][1] == "0015_validation_staging.sql"
        with eng.begin() as conn:
            conn.exec_driver_sql(every[-1][2])
        _populate(settings, landing)
        with eng.begin() as conn:
            conn.exec_driver_sql("DROP TABLE validation_staging")
    with eng.connect() as conn:
        before = conn.execute(
            sa.text("SELECT track_id, cluster_id FROM current_cluster_assignments ORDER BY 1")
        ).all()
    assert len(before) == 25

    monkeypatch.delenv("MUSICVAE_SQL_DIR")
    assert db.migrate(eng) == [every[-1][1]]

    with eng.connect() as conn:
        after = conn.execute(
            sa.text("SELECT track_id, cluster_id FROM current_cluster_assignments ORDER BY 1")
        ).all()
        neighbours = conn.execute(
            sa.text("SELECT * FROM similar_tracks(:t, 3)"), {"t": before[0][0]}
        ).all()
    assert after == before and len(neighbours) == 3

    # The next run's assignments get a partition of their own; the model version's embeddings
    # stay in the default partition, where its index already is.
    recluster.run_recluster(settings, "recluster-2")
    with eng.connect() as conn:
        partitions = conn.execute(
            sa.text(
                "SELECT a.run_id, c.relname, count(*) FROM cluster_assignments a "
                "JOIN pg_class c ON c.oid = a.tableoid GROUP BY 1, 2 ORDER BY 1"
            )
        ).all()
        current = conn.execute(
            sa.text("SELECT DISTINCT run_id FROM current_cluster_assignments")
        ).scalars()
        assert list(current) == ["recluster-2"]
        embeddings = conn.execute(
            sa.text(
                "SELECT c.relname, e.run_id, count(*) FROM track_embeddings e "
                "JOIN pg_class c ON c.oid = e.tableoid GROUP BY 1, 2"
            )
        ).all()
    assert partitions == [
        ("recluster-1", _partition_name("recluster-1"), 25),
        ("recluster-2", _partition_name("recluster-2"), 25),
    ]
    assert embeddings == [("track_embeddings_default", "recluster-2", 25)]


def _previous_hnsw_index(conn, version: int, dim: int) -> None:
    conn.exec_driver_sql(
        f"CREATE INDEX IF NOT EXISTS track_embeddings_hnsw_v{version} ON track_embeddings "
        f"USING hnsw ((embedding::vector({dim})) vector_cosine_ops) WHERE model_version = {version}"
    )


def _populate(settings, landing) -> None:
    from musicvae.ingest.run import run_ingest
    from musicvae.quality.validate import run_validation
    from musicvae.registry.snapshots import take_snapshot
    from musicvae.retrain.promotion import decide
    from musicvae.retrain.steps import RetrainParams, prepare_features, register, train

    run_ingest(settings, "ingest", str(landing))
    run_validation(settings, "validate")
    snapshot = take_snapshot(settings)["snapshot_id"]
    prepare_features(settings, snapshot)
    params = RetrainParams(epochs=1, n_clusters=3, vocab_size=64)
    version = register(settings, train(settings, snapshot, params), "retrain")
    decide(settings, version, margin=0.0)
    recluster.run_recluster(settings, "recluster-1")


def _run_with_assignments(url: str, run: str, track_ids: list[str]) -> None:
    """One recluster run's rows through the pipeline's write path: its own table, attached."""
    with db.engine(url).begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO cluster_runs (run_id, model_version, n_clusters, n_tracks) "
                "VALUES (:r, 1, 1, :n)"
            ),
            {"r": run, "n": len(track_ids)},
        )
        conn.execute(
            sa.text("INSERT INTO clusters VALUES (:r, 0, :n, 'c', '{}', '{}', '[0,0]')"),
            {"r": run, "n": len(track_ids)},
        )
        table = recluster.assignments_table(conn, run)
        assert table == _partition_name(run)
        n = len(track_ids)
        recluster.write_assignments(conn, table, run, track_ids, np.zeros(n), np.ones(n))
        recluster.attach_assignments(conn, table, run)


def test_a_run_naming_an_unknown_track_is_refused_whole(one_track):
    url = one_track.database_url
    with pytest.raises(sa.exc.IntegrityError, match="foreign key"):
        _run_with_assignments(url, "run-1", ["s/A1", "s/NOPE"])
    with db.engine(url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM cluster_runs")).scalar() == 0
        leftover = conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": _partition_name("run-1")})
        assert leftover.scalar() is None
    _run_with_assignments(url, "run-1", ["s/A1"])
    with db.engine(url).connect() as conn:
        rows = conn.execute(sa.text("SELECT run_id, track_id FROM cluster_assignments")).all()
    assert rows == [("run-1", "s/A1")]


def _embeddings(url: str, run: str, track_ids: list[str]) -> str:
    """A version's first run's embeddings through the pipeline's write path: its own table."""
    with db.engine(url).begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO cluster_runs (run_id, model_version, n_clusters, n_tracks) "
                "VALUES (:r, 1, 1, :n)"
            ),
            {"r": run, "n": len(track_ids)},
        )
        table = recluster.embeddings_table(conn, 1)
        vectors = np.arange(2 * len(track_ids), dtype=np.float32).reshape(-1, 2) + 1
        recluster.write_embeddings(conn, table, 1, run, track_ids, vectors)
        recluster.attach_embeddings(conn, table, 1)
        recluster.build_hnsw_index(conn, 1, 2)
    return table


def test_a_versions_first_embeddings_get_a_partition_and_index_of_their_own(one_track):
    url = one_track.database_url
    with pytest.raises(sa.exc.IntegrityError, match="foreign key"):
        _embeddings(url, "run-1", ["s/A1", "s/NOPE"])
    with db.engine(url).connect() as conn:
        leftover = conn.execute(sa.text("SELECT to_regclass('track_embeddings_v1')")).scalar()
        assert leftover is None
    assert _embeddings(url, "run-1", ["s/A1"]) == "track_embeddings_v1"
    with db.engine(url).begin() as conn:
        placed = conn.execute(
            sa.text(
                "SELECT c.relname, e.track_id, e.embedding::text FROM track_embeddings e "
                "JOIN pg_class c ON c.oid = e.tableoid"
            )
        ).all()
        index_on = conn.execute(
            sa.text("SELECT tablename FROM pg_indexes WHERE indexname = 'track_embeddings_hnsw_v1'")
        ).scalar()
        # A later run of the same version writes through the partitioned table, replacing rows.
        conn.execute(
            sa.text(
                "INSERT INTO cluster_runs (run_id, model_version, n_clusters, n_tracks) "
                "VALUES ('run-2', 1, 1, 1)"
            )
        )
        assert recluster.embeddings_table(conn, 1) == "track_embeddings"
        recluster.write_embeddings(
            conn, "track_embeddings", 1, "run-2", ["s/A1"], np.array([[5.0, 6.0]], np.float32)
        )
        again = conn.execute(sa.text("SELECT run_id, embedding::text FROM track_embeddings")).all()
    assert placed == [("track_embeddings_v1", "s/A1", "[1,2]")]
    assert index_on == "track_embeddings_v1"
    assert again == [("run-2", "[5,6]")]


def test_the_server_keeps_its_data_folder_when_another_pytest_session_starts(
    servers, tmp_path_factory
):
    # What a second session does to pytest's temporary root, run beside this one. Run as
    # root, the server runs as another user; a CHECKPOINT reopens its pg_control, which
    # panicked the server when its data folder lay under that root.
    tmp_path_factory.getbasetemp().parent.chmod(0o700)
    conn = psycopg2.connect(servers.database_url("postgres", driver="postgresql"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("CHECKPOINT")
            cur.execute("SELECT count(*) FROM pg_database")
            assert cur.fetchone()[0] >= 3
    finally:
        conn.close()
