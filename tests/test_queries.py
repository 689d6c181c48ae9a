"""The SQL users rely on: views, similar_tracks() and every example in sql/queries, checked
against a catalogue state built by hand so that the right answers are known."""

from collections import Counter

import numpy as np
import pytest
import sqlalchemy as sa

from musicvae.catalogue.recluster import (
    attach_embeddings,
    build_hnsw_index,
    embeddings_table,
    write_embeddings,
)
from musicvae.core import db
from musicvae.model.clustering import stable_ids

from .conftest import REPO

QUERIES = REPO / "sql" / "queries"
GENRES = ["Pop"] * 6 + ["Jazz"] * 4 + ["Rock"] * 2
QUARANTINED = "bimodal_balanced/A012"
MOVED = {"bimodal_balanced/A006": (0, 1), "bimodal_balanced/A007": (1, 0)}


def _track(i: int) -> str:
    return f"bimodal_balanced/A{i:03d}"


@pytest.fixture
def catalogue(settings):
    """12 tracks (one quarantined), a champion, two recluster runs in which two tracks move."""
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(12, 4)).astype(np.float32)
    eng = db.engine(settings.database_url)
    with eng.begin() as conn:
        conn.execute(sa.text("INSERT INTO ingest_runs (run_id, landing) VALUES ('i', '/x')"))
        for i, genre in enumerate(GENRES, 1):
            conn.execute(
                sa.text(
                    "INSERT INTO tracks (track_id, subset, song_id, artist, title, genre, "
                    "quadrant, status, ingest_run_id) VALUES (:t, 'bimodal_balanced', :s, "
                    "'Artist', :title, :g, 'Q1', :status, 'i')"
                ),
                {
                    "t": _track(i),
                    "s": f"A{i:03d}",
                    "title": f"Song {i}",
                    "g": genre,
                    "status": "quarantined" if _track(i) == QUARANTINED else "valid",
                },
            )
        conn.execute(
            sa.text(
                "INSERT INTO model_versions (snapshot_id, n_tracks, params, params_hash, "
                "code_version, artifact_prefix) VALUES ('s', 12, '{}', 'p', 'c', 'models/x')"
            )
        )
        conn.execute(sa.text("INSERT INTO model_aliases VALUES ('champion', 1, now(), 'test')"))
        for n, run in enumerate(("run-1", "run-2")):
            conn.execute(
                sa.text(
                    "INSERT INTO cluster_runs (run_id, model_version, created_at, n_clusters, "
                    "n_tracks) VALUES (:r, 1, now() - make_interval(mins => :m), 2, 12)"
                ),
                {"r": run, "m": 10 - n},
            )
            for c in (0, 1):
                conn.execute(
                    sa.text(
                        "INSERT INTO clusters VALUES (:r, :c, 6, :label, '{}', '{}', "
                        "CAST(:v AS vector))"
                    ),
                    {"r": run, "c": c, "label": f"cluster {c}", "v": "[0,0,0,0]"},
                )
            for i in range(1, 13):
                cluster = 0 if i <= 6 else 1
                if run == "run-2" and _track(i) in MOVED:
                    cluster = MOVED[_track(i)][1]
                conn.execute(
                    sa.text("INSERT INTO cluster_assignments VALUES (:r, :t, :c, :d)"),
                    {"r": run, "t": _track(i), "c": cluster, "d": i / 10},
                )
        vectors = embeddings_table(conn, 1)
        write_embeddings(conn, vectors, 1, "run-2", [_track(i) for i in range(1, 13)], embeddings)
        attach_embeddings(conn, vectors, 1)
        build_hnsw_index(conn, 1, 4)
    return settings, embeddings


def _run(settings, name: str, **params):
    sql = (QUERIES / name).read_text()
    with db.engine(settings.database_url).connect() as conn:
        return conn.execute(sa.text(sql), params).mappings().all()


def test_similar_tracks_returns_the_nearest_valid_tracks_by_cosine(catalogue):
    settings, embeddings = catalogue
    rows = _run(settings, "similar_tracks.sql", track_id=_track(1))
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    distance = 1 - unit @ unit[0]
    expected = [
        _track(i + 1) for i in np.argsort(distance) if _track(i + 1) not in (_track(1), QUARANTINED)
    ][:10]
    assert [r["track_id"] for r in rows] == expected
    assert [float(r["distance"]) for r in rows] == sorted(float(r["distance"]) for r in rows)
    np.testing.assert_allclose(
        float(rows[0]["distance"]), distance[int(expected[0][-3:]) - 1], atol=1e-4
    )


def test_similar_tracks_explains_a_track_without_embedding(catalogue):
    settings, _ = catalogue
    with pytest.raises(sa.exc.DBAPIError, match="has no embedding from the champion"):
        _run(settings, "similar_tracks.sql", track_id="bimodal_balanced/A999")


def test_cluster_members_and_genre_mix_read_the_latest_run(catalogue):
    settings, _ = catalogue
    members = _run(settings, "cluster_members.sql", cluster_id=0)
    expected = [_track(i) for i in range(1, 6)] + [_track(7)]
    assert [r["track_id"] for r in members] == expected
    mix = _run(settings, "cluster_genre_mix.sql", cluster_id=1)
    # Cluster 1 in run-2: A006 (Pop), A008-A010 (Jazz), A011 (Rock); A012 is quarantined.
    assert [(r["genre"], r["tracks"]) for r in mix] == [("Jazz", 3), ("Pop", 1), ("Rock", 1)]
    assert float(sum(r["percent"] for r in mix)) == pytest.approx(100.0, abs=0.2)


def test_tracks_that_moved_lists_exactly_the_moves(catalogue):
    settings, _ = catalogue
    rows = _run(settings, "tracks_that_moved.sql")
    assert {r["track_id"]: (r["previous_cluster"], r["current_cluster"]) for r in rows} == MOVED


def test_cluster_summary_shows_the_latest_run(catalogue):
    settings, _ = catalogue
    with db.engine(settings.database_url).connect() as conn:
        rows = conn.execute(sa.text("SELECT run_id, cluster_id FROM cluster_summary")).all()
    assert sorted(rows) == [("run-2", 0), ("run-2", 1)]


def _stable_ids(labels: list[int], tracks: list[str], previous: dict[int, set[str]]):
    """stable_ids on the counts the recluster keeps for these assignments."""
    where = {t: c for c, members in previous.items() for t in members}
    flows = Counter((where[t], c) for c, t in zip(labels, tracks, strict=True) if t in where)
    return stable_ids(flows, Counter(labels), {c: len(m) for c, m in previous.items()})


def test_stable_ids_keep_the_previous_ids_of_matching_clusters():
    tracks = [f"t{i}" for i in range(9)]
    previous = {7: {"t0", "t1", "t2"}, 3: {"t3", "t4", "t5"}, 5: {"t6", "t7", "t8"}}
    # KMeans numbered the same groups differently, and one track moved.
    labels = [2, 2, 2, 0, 0, 1, 1, 1, 1]
    assert _stable_ids(labels, tracks, previous).tolist() == [3, 5, 7]
    # A cluster that shares no member with any old one gets a fresh id.
    assert _stable_ids([0, 0, 1], ["x", "y", "t0"], {7: {"t0"}}).tolist() == [8, 7]
    assert _stable_ids([1, 0], ["a", "b"], {}).tolist() == [0, 1]


def test_similar_tracks_is_answered_from_the_hnsw_index(catalogue):
    settings, _ = catalogue
    with db.engine(settings.database_url).connect() as conn:
        # Twelve rows are cheaper to scan than to look up; forbid that, as a large table would.
        conn.exec_driver_sql("SET enable_seqscan = off")
        conn.execute(sa.text("SELECT * FROM similar_tracks(:t, 5)"), {"t": _track(1)}).all()
        conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
    with db.engine(settings.database_url).connect() as conn:
        scans = conn.execute(
            sa.text(
                "SELECT idx_scan FROM pg_stat_user_indexes "
                "WHERE indexrelname = 'track_embeddings_hnsw_v1'"
            )
        ).scalar()
    assert scans >= 1


def test_messy_years_and_durations_get_typed_columns(settings):
    with db.engine(settings.database_url).begin() as conn:
        conn.execute(sa.text("INSERT INTO ingest_runs (run_id, landing) VALUES ('i', '/x')"))
        for n, (year, duration) in enumerate(
            [("1970-??-??", "215"), ("20/06/2005", "30.5"), ("", "n/a"), ("unknown", "")]
        ):
            conn.execute(
                sa.text(
                    "INSERT INTO tracks (track_id, subset, song_id, year, metadata, ingest_run_id) "
                    "VALUES (:t, 's', :t, :y, CAST(:m AS jsonb), 'i')"
                ),
                {"t": f"s/A{n}", "y": year, "m": f'{{"Duration": "{duration}"}}'},
            )
        rows = conn.execute(
            sa.text("SELECT release_year, duration_s FROM tracks ORDER BY track_id")
        ).all()
    assert rows == [(1970, 215.0), (2005, 30.5), (None, None), (None, None)]


def test_views_follow_the_champion_not_the_newest_run(catalogue):
    settings, _ = catalogue
    with db.engine(settings.database_url).begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO model_versions (snapshot_id, n_tracks, params, params_hash, "
                "code_version, artifact_prefix) VALUES ('s', 12, '{}', 'q', 'c', 'models/y')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO cluster_runs (run_id, model_version, n_clusters, n_tracks) "
                "VALUES ('run-3', 2, 1, 1)"
            )
        )
        conn.execute(
            sa.text("INSERT INTO clusters VALUES ('run-3', 0, 1, 'x', '{}', '{}', '[0,0,0,0]')")
        )
        conn.execute(
            sa.text("INSERT INTO cluster_assignments VALUES ('run-3', :t, 0, 0.1)"),
            {"t": _track(1)},
        )
    with db.engine(settings.database_url).connect() as conn:
        current = conn.execute(
            sa.text("SELECT DISTINCT run_id FROM current_cluster_assignments")
        ).all()
        summary = conn.execute(sa.text("SELECT DISTINCT run_id FROM cluster_summary")).all()
        conn.execute(sa.text("UPDATE model_aliases SET version = 2"))
        promoted = conn.execute(
            sa.text("SELECT DISTINCT run_id FROM current_cluster_assignments")
        ).all()
    assert current == summary == [("run-2",)]
    assert promoted == [("run-3",)]
