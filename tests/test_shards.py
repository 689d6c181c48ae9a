"""The recluster's embedding pass in shards, against the real servers: any shard size gives the
same run, and a run with a missing shard writes nothing."""

import numpy as np
import pytest
import sqlalchemy as sa

from musicvae.catalogue.recluster import run_recluster
from musicvae.catalogue.shards import embed, gather, plan
from musicvae.core import db
from musicvae.core.errors import ShardMissingError
from musicvae.core.storage import ObjectStore
from musicvae.ingest.run import run_ingest
from musicvae.quality.validate import run_validation
from musicvae.registry.snapshots import take_snapshot
from musicvae.retrain.promotion import decide
from musicvae.retrain.steps import RetrainParams, prepare_features, register, train

pytestmark = pytest.mark.integration


@pytest.fixture
def champion(settings, landing):
    run_ingest(settings, "ingest", str(landing))
    run_validation(settings, "validate")
    snapshot = take_snapshot(settings)["snapshot_id"]
    prepare_features(settings, snapshot, "mel")
    params = RetrainParams(epochs=2, n_clusters=4, vocab_size=128, audio_frontend="mel")
    version = register(settings, train(settings, snapshot, params), "retrain")
    assert decide(settings, version, margin=0.01)["promoted"]
    return version


def _assignments(settings, run_id: str) -> dict:
    with db.engine(settings.database_url).connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT track_id, cluster_id, distance FROM cluster_assignments WHERE run_id = :r"
            ),
            {"r": run_id},
        ).all()
    return {t: (c, round(d, 4)) for t, c, d in rows}


def test_any_shard_size_gives_the_same_embeddings_and_clusters(settings, champion):
    one = plan(settings, "one-shard", size=1000)
    many = plan(settings, "many-shards", size=7)
    assert [s["n_tracks"] for s in one] == [25]
    assert [s["n_tracks"] for s in many] == [7, 7, 7, 4]
    assert {s["model_version"] for s in one + many} == {champion}

    one = [embed(settings, s) for s in one]
    many = [embed(settings, s) for s in reversed(many)]  # finished in any order
    store = ObjectStore(settings)
    tracks_one, z_one = gather(store, one)
    tracks_many, z_many = gather(store, many)
    assert tracks_one == tracks_many and z_one.shape == (25, 32)
    np.testing.assert_allclose(z_many, z_one, atol=1e-5)

    first = run_recluster(settings, "one-shard", shards=one)
    second = run_recluster(settings, "many-shards", shards=many)
    assert first.n_tracks == second.n_tracks == 25
    assert _assignments(settings, "many-shards") == _assignments(settings, "one-shard")


def test_a_run_missing_a_shard_writes_nothing(settings, champion):
    shards = [embed(settings, s) for s in plan(settings, "broken", size=10)]
    ObjectStore(settings).remove(f"{shards[1]['key']}.npy")  # as if its task had not run
    with pytest.raises(ShardMissingError, match="shard 1 has no embeddings"):
        run_recluster(settings, "broken", shards=shards)
    assert _assignments(settings, "broken") == {}
    with db.engine(settings.database_url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM cluster_runs")).scalar() == 0
