"""The retrain stage against the real servers: features, training, checkpoints, promotion."""

import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from dataclasses import asdict

import numpy as np
import pytest
import sqlalchemy as sa
import torch

from musicvae.catalogue.recluster import run_recluster
from musicvae.core import db
from musicvae.core.storage import ObjectStore
from musicvae.ingest.run import run_ingest
from musicvae.model.features import LyricsVectorizer
from musicvae.model.inputs import lyrics_texts
from musicvae.model.train import split_rows
from musicvae.quality.validate import run_validation
from musicvae.registry import versions
from musicvae.registry.snapshots import load_snapshot, take_snapshot
from musicvae.retrain.promotion import decide
from musicvae.retrain.steps import (
    RetrainParams,
    candidate_prefix,
    prepare_features,
    register,
    train,
)

FAST = RetrainParams(epochs=3, n_clusters=4, vocab_size=128)


def _catalogue(settings, landing, frontend: str = "musicnn") -> str:
    run_ingest(settings, "ingest", str(landing))
    run_validation(settings, "validate")
    snapshot = take_snapshot(settings)["snapshot_id"]
    prepare_features(settings, snapshot, frontend)
    return snapshot


def _train_and_register(settings, snapshot, params, run="retrain") -> int:
    candidate = train(settings, snapshot, params)
    return register(settings, candidate, run)


def _query(settings, sql, **params):
    with db.engine(settings.database_url).connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def _any_valid(settings) -> str:
    return _query(settings, "SELECT song_id FROM tracks WHERE status = 'valid' LIMIT 1")[0][0]


def _weights(settings, snapshot, params) -> dict:
    data = ObjectStore(settings).get_bytes(f"{candidate_prefix(snapshot, params)}/model.pt")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)["state_dict"]


def test_first_model_becomes_champion_and_the_catalogue_is_clustered_with_it(settings, landing):
    snapshot = _catalogue(settings, landing)
    version = _train_and_register(settings, snapshot, FAST)

    decision = decide(settings, version, margin=0.01)

    assert decision["promoted"] and "no champion" in decision["reason"]
    with db.engine(settings.database_url).connect() as conn:
        assert versions.champion(conn).version == version
    result = run_recluster(settings, "recluster-1")
    assert result.model_version == version and result.n_tracks == 25
    # A second run keeps every cluster's id, so nothing shows as moved; search is indexed.
    run_recluster(settings, "recluster-2")
    assert _query(settings, "SELECT * FROM cluster_changes") == []
    # The first run had nothing to anchor to; the second started from the first's clusters.
    anchored = _query(
        settings, "SELECT run_id, metrics->'anchored' FROM cluster_runs ORDER BY run_id"
    )
    assert anchored == [("recluster-1", False), ("recluster-2", True)]
    # Churn, in SQL: the second run moved nothing; a third after three tracks were moved by hand
    # in the second (a known difference) shows the ones it put back, and their flows.
    churn = (
        "SELECT run_id, previous_run_id, tracks_compared, tracks_moved, ari "
        "FROM cluster_run_changes"
    )
    assert _query(settings, churn) == [("recluster-2", "recluster-1", 25, 0, 1.0)]
    first_three = (
        "SELECT track_id FROM cluster_assignments WHERE run_id = 'recluster-2' "
        "ORDER BY track_id LIMIT 3"
    )
    hand_moved = {t for (t,) in _query(settings, first_three)}
    with db.engine(settings.database_url).begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE cluster_assignments SET cluster_id = (cluster_id + 1) % 4 "
                f"WHERE run_id = 'recluster-2' AND track_id IN ({first_three})"
            )
        )
    run_recluster(settings, "recluster-3")
    differ = _query(
        settings,
        "SELECT a.track_id FROM cluster_assignments a JOIN cluster_assignments b "
        "USING (track_id) WHERE a.run_id = 'recluster-3' AND b.run_id = 'recluster-2' "
        "AND a.cluster_id <> b.cluster_id",
    )
    moved = {t for (t,) in differ}
    # Anchored to the edited clusters, KMeans may keep a hand-moved track where it was put.
    assert moved and moved <= hand_moved
    [(_, previous, compared, n_moved, ari)] = _query(
        settings, churn + " WHERE run_id = 'recluster-3'"
    )
    assert (previous, compared, n_moved) == ("recluster-2", 25, len(moved)) and ari < 1.0
    flows = _query(
        settings,
        "SELECT sum(tracks) FROM cluster_run_flows WHERE run_id = 'recluster-3' "
        "AND previous_cluster <> current_cluster",
    )
    assert flows == [(len(moved),)]
    # The clusters page shows the same figures, and draws the flows.
    from musicvae.ui.cluster_pages import clusters_html, flows_png

    page = clusters_html(settings)
    assert "Clusters of run recluster-3" in page
    assert f"{len(moved)} of 25 ({100 * len(moved) / 25:.1f}%)" in page
    assert flows_png(settings, "recluster-3")[:4] == b"\x89PNG"
    assert _query(settings, "SELECT count(*) FROM cluster_summary")[0][0] == 4
    assert (
        _query(
            settings,
            "SELECT indexname FROM pg_indexes WHERE indexname = :i",
            i=f"track_embeddings_hnsw_v{version}",
        )
        != []
    )
    # The version's embeddings are its own partition, which each later run rewrote.
    assert _query(
        settings,
        "SELECT c.relname, e.run_id, count(*) FROM track_embeddings e "
        "JOIN pg_class c ON c.oid = e.tableoid GROUP BY 1, 2",
    ) == [(f"track_embeddings_v{version}", "recluster-3", 25)]
    neighbours = _query(
        settings,
        "SELECT track_id FROM similar_tracks(:t, 5)",
        t="bimodal_balanced/" + _any_valid(settings),
    )
    assert len(neighbours) == 5
    # Training the same snapshot with the same parameters again is a no-op.
    assert train(settings, snapshot, FAST) is None


@pytest.mark.parametrize(("frontend", "baseline"), [("musicnn", "front end"), ("mel", "spectral")])
def test_the_evaluation_report_recomputes_the_research_table_with_plots(
    settings, landing, frontend, baseline, monkeypatch
):
    from musicvae.retrain.model_report import report

    snapshot = _catalogue(settings, landing, frontend)
    version = _train_and_register(
        settings, snapshot, RetrainParams(**{**asdict(FAST), "audio_frontend": frontend})
    )

    # Above the cap the report clusters a sample of the snapshot, and says so.
    monkeypatch.setenv("MUSICVAE_EVALUATION_SAMPLE", "20")
    result = report(settings, version, seeds=(0, 1))

    store = ObjectStore(settings)
    prefix = result["evaluation_prefix"]
    for name in (
        "latent_map.png",
        "contingency.png",
        "results_genre.png",
        "training.png",
        "reconstructions.png",
    ):
        assert store.get_bytes(f"{prefix}/{name}")[:8] == b"\x89PNG\r\n\x1a\n", name
    rows = store.get_json(f"{prefix}/results.json")
    assert {(r["representation"], r["method"]) for r in rows} >= {
        (baseline, "kmeans"),
        ("PCA", "kmeans"),
        ("plain AE", "kmeans"),
        ("hybrid VAE", "kmeans"),
        ("hybrid VAE", "agglomerative"),
        ("hybrid VAE", "gmm"),
        ("hybrid VAE", "hdbscan"),
    }
    assert {r["metric"] for r in rows} >= {
        "nmi",
        "ami",
        "ari",
        "purity",
        "silhouette",
        "calinski_harabasz",
        "davies_bouldin",
    }
    assert {r["labels"] for r in rows} == {"genre", "quadrant"}
    assert all(r["n"] == 2 for r in rows if r["metric"] == "nmi")
    metrics, stored_prefix = _query(
        settings,
        "SELECT metrics, evaluation_prefix FROM model_versions WHERE version = :v",
        v=version,
    )[0]
    assert stored_prefix == prefix
    assert 0 <= metrics["evaluation"]["genre/hybrid VAE/kmeans/nmi"] <= 1
    assert result["drift"] is None and "drift" not in metrics  # no champion to compare with
    text = store.get_bytes(f"{prefix}/results.txt").decode()
    assert text.startswith("on 20 of the snapshot's 25 tracks") and "± " in text
    assert metrics["evaluation_tracks"] == 20


def test_the_evaluation_sample_is_uniform_fixed_and_in_snapshot_order():
    from musicvae.retrain.model_report import sample

    tracks = [{"track_id": i} for i in range(1000)]
    drawn = sample(tracks, 100)
    assert drawn == sample(tracks, 100)  # every version of a snapshot: the same tracks
    ids = [t["track_id"] for t in drawn]
    assert len(set(ids)) == 100 and ids == sorted(ids)
    assert 300 < sum(ids) / 100 * 2 < 1700  # spread over the snapshot, not its head
    assert sample(tracks[:50], 100) == tracks[:50]


def test_a_new_version_replaces_the_champion_only_within_the_margin(settings, landing):
    snapshot = _catalogue(settings, landing)
    first = _train_and_register(settings, snapshot, FAST)
    decide(settings, first, margin=0.01)
    second = _train_and_register(settings, snapshot, RetrainParams(**{**asdict(FAST), "seed": 5}))

    # Evaluated against the champion: how far its latent space moved, on the same 25 tracks.
    from musicvae.retrain.model_report import report

    drift = report(settings, second, seeds=(0,))["drift"]
    assert drift["against_version"] == first and drift["tracks"] == 25
    assert _query(
        settings,
        "SELECT metrics->'evaluation_tracks' FROM model_versions WHERE version = :v",
        v=second,
    ) == [(25,)]
    assert 0 < drift["linear_cka"] < 1 and 0 <= drift["knn_overlap_at_10"] < 1
    stored = "SELECT metrics->'drift' FROM model_versions WHERE version = :v"
    assert _query(settings, stored, v=second) == [(drift,)]

    # A negative margin demands a strict improvement larger than any NMI difference can be.
    kept = decide(settings, second, margin=-1.0)
    assert not kept["promoted"]
    assert kept["scores"]["candidate"] >= 0 and kept["scores"]["champion"] >= 0
    assert kept["held_out_tracks"] >= 3 and "kept the champion" in kept["reason"]
    with db.engine(settings.database_url).connect() as conn:
        assert versions.champion(conn).version == first
    recorded = _query(
        settings, "SELECT promotion FROM model_versions WHERE version = :v", v=second
    )[0][0]
    assert recorded == kept

    promoted = decide(settings, second, margin=1.0)
    assert promoted["promoted"] and promoted["champion_before"] == first
    with db.engine(settings.database_url).connect() as conn:
        assert versions.champion(conn).version == second


def test_the_lyrics_vocabulary_is_fitted_on_the_training_split_only(settings, landing):
    snapshot = _catalogue(settings, landing)
    train(settings, snapshot, FAST)
    store = ObjectStore(settings)
    tracks = load_snapshot(store, snapshot)
    texts = lyrics_texts(store, tracks)
    config = FAST.train_config()
    train_rows, val_rows = split_rows(len(tracks), config.val_fraction, config.seed)
    stored = pickle.loads(store.get_bytes(f"{candidate_prefix(snapshot, FAST)}/vectorizer.pkl"))
    expected = LyricsVectorizer(FAST.vocab_size).fit([texts[i] for i in train_rows])
    everything = LyricsVectorizer(FAST.vocab_size).fit(texts)
    assert stored.vocabulary_ == expected.vocabulary_
    assert stored.vocabulary_ != everything.vocabulary_
    saved = store.get_json(f"{candidate_prefix(snapshot, FAST)}/config.json")
    assert saved["validation_tracks"] == [tracks[i]["track_id"] for i in val_rows]


TRAIN_IN_CHILD = """
import logging, sys
from musicvae.core.config import Settings
from musicvae.retrain.steps import RetrainParams, train
logging.basicConfig(level=logging.INFO)
train(Settings.from_env(), sys.argv[1], RetrainParams(epochs=8, n_clusters=4, vocab_size=128))
"""


def test_a_killed_training_resumes_from_its_checkpoint(new_settings, landing):
    params = RetrainParams(epochs=8, n_clusters=4, vocab_size=128)
    # The reference: the same training, never interrupted, in its own database and bucket.
    reference = new_settings()
    snapshot = _catalogue(reference, landing)
    train(reference, snapshot, params)

    settings = new_settings()
    assert _catalogue(settings, landing) == snapshot
    store = ObjectStore(settings)
    key = f"{candidate_prefix(snapshot, params)}/checkpoint.pt"
    child = subprocess.Popen(
        [sys.executable, "-c", TRAIN_IN_CHILD, snapshot],
        env={**os.environ, **settings.as_env()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and child.poll() is None:
            if store.exists(key):
                epoch = torch.load(io.BytesIO(store.get_bytes(key)), weights_only=False)
                if epoch["epoch"] >= 2:
                    break
            time.sleep(0.2)
        assert child.poll() is None, "training finished before it could be killed"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    killed_at = torch.load(io.BytesIO(store.get_bytes(key)), weights_only=False)["epoch"]
    assert 2 <= killed_at < params.epochs

    candidate = train(settings, snapshot, params)

    history = candidate and store.get_json(f"{candidate['artifact_prefix']}/config.json")["history"]
    assert [h["epoch"] for h in history] == list(range(1, len(history) + 1))
    assert not store.exists(key), "the checkpoint is removed once the model is saved"
    resumed, uninterrupted = (
        _weights(settings, snapshot, params),
        _weights(reference, snapshot, params),
    )
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert torch.allclose(resumed[name], uninterrupted[name], atol=1e-5), name


RECLUSTER_IN_CHILD = """
import sys
from musicvae.core.config import Settings
from musicvae.catalogue.recluster import run_recluster
run_recluster(Settings.from_env(), sys.argv[1])
"""


def test_a_writer_killed_mid_transaction_leaves_the_previous_state(settings, landing):
    snapshot = _catalogue(settings, landing)
    decide(settings, _train_and_register(settings, snapshot, FAST), margin=0.01)
    run_recluster(settings, "recluster-1")

    def state():
        return (
            _query(settings, "SELECT * FROM cluster_runs ORDER BY run_id"),
            _query(settings, "SELECT * FROM clusters ORDER BY run_id, cluster_id"),
            _query(settings, "SELECT * FROM cluster_assignments ORDER BY run_id, track_id"),
            _query(
                settings,
                "SELECT track_id, run_id, embedding::text FROM track_embeddings ORDER BY track_id",
            ),
            _query(
                settings, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            ),
        )

    before = state()
    blocker = db.engine(settings.database_url).connect()
    transaction = blocker.begin()
    # The writer gets through its run, clusters, embedding upserts and the COPY of its
    # assignments into the run's own table, then waits here to attach that table.
    blocker.execute(sa.text("LOCK TABLE cluster_assignments IN SHARE MODE"))
    child = subprocess.Popen(
        [sys.executable, "-c", RECLUSTER_IN_CHILD, "recluster-2"],
        env={**os.environ, **settings.as_env()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        waiting = []
        while not waiting and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.2)
            waiting = _query(
                settings,
                "SELECT pid FROM pg_stat_activity WHERE "
                "wait_event_type = 'Lock' AND query LIKE '%cluster_assignments_attach%'",
            )
        assert waiting, "the writer never reached the attachment of its assignments"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        transaction.rollback()
        blocker.close()
        if child.poll() is None:
            child.kill()
    # The orphaned backend aborts once it can read from its dead client.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _query(
        settings, "SELECT 1 FROM pg_stat_activity WHERE pid = :p", p=waiting[0][0]
    ):
        time.sleep(0.2)

    assert state() == before
    assert _query(settings, "SELECT 1 FROM cluster_runs WHERE run_id = 'recluster-2'") == []


def test_tracks_validated_after_a_recluster_join_the_nearest_cluster(settings, landing):
    import pandas as pd

    from musicvae.catalogue.assign import assign_new_tracks, nearest

    csv = landing / "MERGE_Bimodal_Balanced" / "merge_bimodal_balanced_metadata.csv"
    full = csv.read_bytes()
    rows = pd.read_csv(csv, dtype=str, keep_default_na=False)
    held_back = rows.iloc[:3]
    rows.iloc[3:].to_csv(csv, index=False)
    snapshot = _catalogue(settings, landing)
    decide(settings, _train_and_register(settings, snapshot, FAST), margin=0.01)
    run = run_recluster(settings, "recluster-1")

    csv.write_bytes(full)  # the held-back tracks arrive
    assert run_ingest(settings, "ingest-2", str(landing)).tracks_new == 3
    run_validation(settings, "validate-2")
    result = assign_new_tracks(settings)

    assert (result.assigned, result.run_id) == (3, "recluster-1")
    new_ids = {f"bimodal_balanced/{a}" for a in held_back["Audio_Song"]}
    assigned = _query(
        settings,
        "SELECT track_id, cluster_id, distance FROM "
        "current_cluster_assignments WHERE track_id = ANY(:t)",
        t=list(new_ids),
    )
    assert {r.track_id for r in assigned} == new_ids
    centroids = {
        c: np.array(json.loads(v))
        for c, v in _query(
            settings, "SELECT cluster_id, centroid::text FROM clusters WHERE run_id = 'recluster-1'"
        )
    }
    embedded = dict(
        _query(
            settings,
            "SELECT track_id, embedding::text FROM track_embeddings WHERE track_id = ANY(:t)",
            t=list(new_ids),
        )
    )
    for row in assigned:
        [cluster], [distance] = nearest(np.array([json.loads(embedded[row.track_id])]), centroids)
        assert row.cluster_id == cluster and abs(row.distance - distance) < 1e-4
    sizes = _query(settings, "SELECT sum(size) FROM clusters WHERE run_id = 'recluster-1'")
    assert sizes[0][0] == run.n_tracks + 3
    assert assign_new_tracks(settings).assigned == 0  # nothing new: nothing written


def test_the_whole_pipeline_runs_from_the_command_line_without_airflow(
    settings, landing, monkeypatch, capsys
):
    from musicvae.cli import main

    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    assert main(["ingest", "--landing", str(landing)]) == 0
    assert main(["validate"]) == 0
    capsys.readouterr()
    assert main(["retrain", "--epochs", "0"]) == 1
    assert "epochs: 0 is less than the minimum of 1" in capsys.readouterr().err
    assert _query(settings, "SELECT count(*) FROM model_versions") == [(0,)]

    argv = ["retrain", "--epochs", "2", "--n-clusters", "4", "--vocab-size", "128", "--seed", "3"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "model version 1 is the champion" in out
    [(params, promotion, report)] = _query(
        settings, "SELECT params, promotion, evaluation_prefix FROM model_versions"
    )
    assert params["epochs"] == 2 and params["seed"] == 3 and params["audio_frontend"] == "musicnn"
    assert promotion["promoted"] and report is not None
    # The same snapshot and parameters again: found registered, nothing trained twice.
    assert main(argv) == 0
    assert "already registered" in capsys.readouterr().out
    assert main(["recluster"]) == 0
    assert _query(settings, "SELECT count(*) FROM current_cluster_assignments") == [(25,)]


def test_cluster_cards_show_the_members_nearest_each_centre_with_expiring_audio_links(
    settings, landing
):
    import json
    from datetime import timedelta

    import requests

    from musicvae.ui.cluster_pages import card, card_html, map_png

    snapshot = _catalogue(settings, landing)
    version = _train_and_register(settings, snapshot, FAST)
    decide(settings, version, margin=0.01)
    run_recluster(settings, "recluster-1")

    rows = _query(
        settings,
        "SELECT a.cluster_id, a.track_id, e.embedding::text, c.centroid::text "
        "FROM cluster_assignments a JOIN track_embeddings e USING (track_id) "
        "JOIN clusters c ON c.run_id = a.run_id AND c.cluster_id = a.cluster_id",
    )
    nearest: dict[int, list[tuple[float, str]]] = {}
    for cluster, track, vector, centre in rows:
        gap = np.linalg.norm(np.array(json.loads(vector)) - np.array(json.loads(centre)))
        nearest.setdefault(cluster, []).append((gap, track))
    cards = _query(
        settings, "SELECT cluster_id, name, size, medoids, neighbours FROM cluster_cards"
    )
    assert len(cards) == 4
    for cluster, name, size, medoids, neighbours in cards:
        expected = [t for _, t in sorted(nearest[cluster])[:5]]
        assert [m["track_id"] for m in medoids] == expected
        assert size == len(nearest[cluster]) and len(neighbours) == 3 and cluster not in neighbours
        assert " · mostly " in name

    store = ObjectStore(settings)
    medoid = card(settings, cards[0][0])["medoids"][0]
    served = requests.get(medoid["audio_url"], timeout=30)
    assert served.status_code == 200 and served.content == store.get_bytes(medoid["audio_key"])
    short = store.presigned_url(medoid["audio_key"], timedelta(seconds=1))
    time.sleep(2.5)
    assert requests.get(short, timeout=30).status_code == 403
    # Without a signature the object is not readable: nothing was made public.
    plain = f"http://{settings.s3_endpoint}/{settings.bucket}/{medoid['audio_key']}"
    assert requests.get(plain, timeout=30).status_code == 403
    page = card_html(settings, cards[0][0])
    assert page.count("<audio") == len(card(settings, cards[0][0])["medoids"])
    assert map_png(settings, cards[0][0])[:4] == b"\x89PNG"
