"""Stages in shards, against the real servers: any shard size gives the same run, and a run
with a missing shard writes nothing."""

import numpy as np
import pytest
import sqlalchemy as sa

from musicvae.catalogue import recluster
from musicvae.catalogue.recluster import run_recluster
from musicvae.catalogue.shards import embed, plan, read
from musicvae.core import db
from musicvae.core.errors import CatalogueError, ShardMissingError
from musicvae.core.shards import inputs, output_key
from musicvae.core.storage import ObjectStore, sha256_bytes
from musicvae.ingest import merge
from musicvae.ingest.run import plan_ingest, run_ingest, upload_shard
from musicvae.quality import staging
from musicvae.quality.profiles import TrackCheck
from musicvae.quality.validate import plan_validation, profile_shard, run_validation

from .champion import train_champion

pytestmark = pytest.mark.integration


@pytest.fixture
def champion(settings, landing):
    return train_champion(settings, landing, n_clusters=4)


def _assignments(settings, run_id: str) -> dict:
    with db.engine(settings.database_url).connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT track_id, cluster_id, distance FROM cluster_assignments WHERE run_id = :r"
            ),
            {"r": run_id},
        ).all()
    return {t: (c, round(d, 4)) for t, c, d in rows}


def _gather(store, shards) -> tuple[list[dict], np.ndarray]:
    parts = list(read(store, shards))
    return [t for tracks, _ in parts for t in tracks], np.concatenate([z for _, z in parts])


def test_any_shard_size_gives_the_same_embeddings_and_clusters(settings, champion):
    one = plan(settings, "one-shard", size=1000)
    many = plan(settings, "many-shards", size=7)
    assert [s["n_items"] for s in one] == [25]
    assert [s["n_items"] for s in many] == [7, 7, 7, 4]
    assert {s["model_version"] for s in one + many} == {champion}

    one = [embed(settings, s) for s in one]
    many = [embed(settings, s) for s in reversed(many)]  # finished in any order
    store = ObjectStore(settings)
    tracks_one, z_one = _gather(store, one)
    tracks_many, z_many = _gather(store, many)
    assert tracks_one == tracks_many and z_one.shape == (25, 32)
    np.testing.assert_allclose(z_many, z_one, atol=1e-5)

    first = run_recluster(settings, "one-shard", shards=one)
    second = run_recluster(settings, "many-shards", shards=many)
    assert first.n_tracks == second.n_tracks == 25
    assert _assignments(settings, "many-shards") == _assignments(settings, "one-shard")


def test_above_the_minibatch_size_the_clusters_are_fit_on_a_sample_and_every_track_assigned(
    settings, champion, monkeypatch
):
    monkeypatch.setenv("MUSICVAE_MINIBATCH_ABOVE", "20")
    fitted_on = []
    fit = recluster.anchored_kmeans

    def recording(embeddings, *args, **kwargs):
        fitted_on.append(len(embeddings))
        return fit(embeddings, *args, **kwargs)

    monkeypatch.setattr(recluster, "anchored_kmeans", recording)
    for run_id in ("sampled-1", "sampled-2"):
        result = run_recluster(
            settings, run_id, shards=[embed(settings, s) for s in plan(settings, run_id, size=7)]
        )
        assert result.n_tracks == 25 and len(_assignments(settings, run_id)) == 25
    assert fitted_on == [20, 20]
    with db.engine(settings.database_url).connect() as conn:
        sizes = conn.execute(sa.text("SELECT sum(size) FROM clusters GROUP BY run_id")).scalars()
        embedded = conn.execute(sa.text("SELECT count(*) FROM track_embeddings")).scalar()
    assert list(sizes) == [25, 25] and embedded == 25


def test_a_run_missing_a_shard_writes_nothing(settings, champion):
    shards = [embed(settings, s) for s in plan(settings, "broken", size=10)]
    ObjectStore(settings).remove(f"{shards[1]['key']}.npy")  # as if its task had not run
    with pytest.raises(ShardMissingError, match="shard 1 has no output"):
        run_recluster(settings, "broken", shards=shards)
    assert _assignments(settings, "broken") == {}
    with db.engine(settings.database_url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM cluster_runs")).scalar() == 0


def _statuses(settings) -> list[tuple]:
    with db.engine(settings.database_url).connect() as conn:
        return conn.execute(
            sa.text("SELECT track_id, status, status_reason FROM tracks ORDER BY track_id")
        ).all()


def test_validation_in_shards_decides_as_in_one(new_settings, landing):
    one, many = new_settings(), new_settings()
    results = {}
    for settings, size in ((one, 1000), (many, 4)):
        run_ingest(settings, "ingest", str(landing))
        shards = plan_validation(settings, "validate", size=size)
        assert [s["n_items"] for s in shards][-2:] == ([26] if size == 1000 else [4, 2])
        shards = [profile_shard(settings, s) for s in reversed(shards)]
        results[size] = run_validation(settings, "validate", shards=shards).as_dict()
    for key in ("report_key", "docs_key", "report_url", "docs_url"):
        results[1000].pop(key), results[4].pop(key)
    assert results[4] == results[1000] and results[4]["tracks_checked"] == 26
    assert _statuses(many) == _statuses(one)
    # The suites saw the whole batch, not a shard of it.
    assert _expectations(many) == _expectations(one)
    assert ("track_profiles", "expect_column_values_to_be_unique", 26) in _expectations(many)


def _expectations(settings, run_id: str = "validate") -> list[tuple]:
    with db.engine(settings.database_url).connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT suite, expectation, element_count FROM expectation_results "
                "WHERE run_id = :r ORDER BY suite, position"
            ),
            {"r": run_id},
        ).all()


def test_a_retried_validation_replaces_what_an_interrupted_try_staged(settings, landing):
    run_ingest(settings, "ingest", str(landing))
    run = "manual__2026-12-07T04:00:00+00:00"  # colons and a plus, as Airflow names runs
    shards = [profile_shard(settings, s) for s in plan_validation(settings, run, size=10)]
    first = ObjectStore(settings).get_json(output_key(shards[0], "checks.json"))
    eng = db.engine(settings.database_url)
    with eng.begin() as conn:
        # An interrupted try staged its first shard; a run abandoned long ago left a row.
        staging.stage(conn, run, [TrackCheck(**c) for c in first])
        staging.stage(conn, "abandoned", [TrackCheck("T1")])
        conn.execute(
            sa.text(
                "UPDATE validation_staging SET staged_at = now() - interval '8 days' "
                "WHERE run_id = 'abandoned'"
            )
        )
    result = run_validation(settings, run, shards=shards)
    assert result.status == "passed" and result.tracks_checked == 26
    assert ("track_profiles", "expect_column_values_to_be_unique", 26) in _expectations(
        settings, run
    )
    with eng.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM validation_staging")).scalar() == 0
        # The views the suites read are gone with the run.
        views = sa.inspect(conn).get_view_names()
        assert "drift_features" in views and not [v for v in views if "validation" in v]


def test_a_validation_run_missing_a_shard_changes_nothing(settings, landing):
    run_ingest(settings, "ingest", str(landing))
    before = _statuses(settings)
    shards = [profile_shard(settings, s) for s in plan_validation(settings, "v", size=10)]
    ObjectStore(settings).remove(f"{shards[2]['key']}.checks.json")
    with pytest.raises(ShardMissingError, match="shard 2 has no output"):
        run_validation(settings, "v", shards=shards)
    assert _statuses(settings) == before and "new" in {status for _, status, _ in before}
    with db.engine(settings.database_url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM data_quality_runs")).scalar() == 0


def _tracks(settings) -> list[tuple]:
    with db.engine(settings.database_url).connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT track_id, audio_key, audio_sha256, lyrics_key, metadata, status, "
                "status_reason FROM tracks ORDER BY track_id"
            )
        ).all()


def test_ingest_in_shards_writes_what_one_shard_writes(new_settings, landing):
    one, many = new_settings(), new_settings()
    results = {}
    for settings, size in ((one, 1000), (many, 3)):
        shards = plan_ingest(settings, "ingest", str(landing), size=size)
        assert (len(shards) == 1) == (size == 1000)
        shards = [upload_shard(settings, s) for s in reversed(shards)]
        results[size] = run_ingest(settings, "ingest", shards=shards).as_dict()
    assert results[3] == results[1000] and results[3]["tracks_new"] > 20
    assert _tracks(many) == _tracks(one)
    # The shards were scratch: nothing of them is left beside the raw files.
    assert [k for k in ObjectStore(many).list_keys("") if not k.startswith("raw/")] == []


def test_an_ingest_plan_whose_metadata_breaks_halfway_leaves_no_shards(
    settings, landing, monkeypatch
):
    [csv] = landing.glob("MERGE_*/merge_*_metadata.csv")
    width = len(csv.read_text().splitlines()[0].split(","))
    csv.write_text(csv.read_text() + ",".join(["A999"] * (width + 2)) + "\n")
    # Five rows parsed at a time: shards of five are written before the last chunk breaks.
    monkeypatch.setattr(merge, "METADATA_CHUNK_ROWS", 5)
    with pytest.raises(CatalogueError, match="cannot parse the metadata CSV"):
        plan_ingest(settings, "i", str(landing), size=5)
    assert list(ObjectStore(settings).list_keys("ingest/")) == []


def test_an_ingest_missing_a_shard_writes_nothing(settings, landing):
    shards = [upload_shard(settings, s) for s in plan_ingest(settings, "i", str(landing), size=5)]
    ObjectStore(settings).remove(f"{shards[0]['key']}.rows.json")
    with pytest.raises(ShardMissingError, match="shard 0 has no output"):
        run_ingest(settings, "i", shards=shards)
    assert _tracks(settings) == []


def test_split_writes_shards_from_a_stream_and_at_least_one(settings):
    from musicvae.core.shards import split

    store = ObjectStore(settings)
    for n, sizes in ((10, [5, 5]), (11, [5, 5, 1]), (0, [0])):
        shards = split(store, f"s{n}", iter(range(n)), 5, run_id="r")
        assert [s["n_items"] for s in shards] == sizes and {s["run_id"] for s in shards} == {"r"}
        assert [i for s in shards for i in inputs(store, s)] == list(range(n))


def test_an_ingest_whose_last_shard_cannot_be_read_leaves_nothing_of_the_first(settings, landing):
    # The shards are written one at a time, inside one transaction.
    shards = [upload_shard(settings, s) for s in plan_ingest(settings, "i", str(landing), size=5)]
    ObjectStore(settings).put_bytes(f"{shards[-1]['key']}.rows.json", b"{ not json")
    with pytest.raises(ValueError):
        run_ingest(settings, "i", shards=shards)
    assert _tracks(settings) == []
    with db.engine(settings.database_url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ingest_runs")).scalar() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM landing_files")).scalar() == 0


def test_an_ingest_run_retried_after_it_landed_keeps_its_record(settings, landing):
    first = run_ingest(settings, "i", str(landing))
    again = run_ingest(settings, "i", str(landing))  # Airflow clears and reruns the whole run
    assert not again.changed and again.tracks_unchanged == first.tracks_new
    with db.engine(settings.database_url).connect() as conn:
        run = conn.execute(sa.text("SELECT tracks_new FROM ingest_runs WHERE run_id = 'i'"))
        assert run.scalar_one() == first.tracks_new


def test_feature_shards_cover_the_snapshot_and_each_task_reads_only_its_own(settings, landing):
    from musicvae.registry.snapshots import load_snapshot, take_snapshot
    from musicvae.retrain.steps import feature_shards, prepare_features

    run_ingest(settings, "ingest", str(landing))
    run_validation(settings, "validate")
    snapshot = take_snapshot(settings)["snapshot_id"]
    store = ObjectStore(settings)
    tracks = load_snapshot(store, snapshot)
    audio = [[t["audio_key"], t["audio_sha256"]] for t in tracks if t["audio_key"]]
    shards = feature_shards(settings, snapshot, 7)
    assert [pair for shard in shards for pair in inputs(store, shard)] == audio
    assert len(shards) == -(-len(audio) // 7) > 2
    done = [prepare_features(settings, snapshot, "mel", shard=shard) for shard in shards]
    assert sum(d["computed"] for d in done) == len({sha for _, sha in audio})
    assert prepare_features(settings, snapshot, "mel") == {"computed": 0, "cached": len(audio)}
    assert feature_shards(settings, snapshot, 7) == shards  # a rerun plans the same shards


def test_features_are_computed_once_per_content_whatever_the_shard(settings):
    from musicvae.local.sample.audio import encode_mp3, render_audio
    from musicvae.model.featurestore import ensure_features, feature_key
    from musicvae.model.frontends import MelFrontend

    store = ObjectStore(settings)
    store.ensure_bucket()
    frontend = MelFrontend()
    audio = []
    for i in range(3):
        data = encode_mp3(render_audio("Pop", "Q1", 0, i)[: 22050 * 3])
        sha = sha256_bytes(data)
        store.put_bytes(f"raw/audio/{sha}.mp3", data)
        audio.append((f"raw/audio/{sha}.mp3", sha))
    assert ensure_features(store, audio[:2], frontend) == 2
    # A later shard holding one cached clip and one new one computes only the new one.
    assert ensure_features(store, audio[1:], frontend) == 1
    assert ensure_features(store, audio, frontend) == 0
    store.remove(feature_key(frontend, audio[0][1]))  # a cache entry lost: computed again
    assert ensure_features(store, audio, frontend) == 1
