"""The comparison harness: clustering methods, metrics, baselines and the seed bookkeeping."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from musicvae.model import baselines
from musicvae.model import evaluation as ev


@pytest.fixture(scope="module")
def blobs():
    x, y = make_blobs(n_samples=150, n_features=4, centers=3, cluster_std=0.5, random_state=1)
    return x, y


def _names(y) -> list[str]:
    return [f"g{i}" for i in y]


# --- cluster ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["kmeans", "agglomerative", "gmm"])
def test_cluster_recovers_blobs_with_exactly_k_groups(blobs, method):
    x, y = blobs
    labels = ev.cluster(x, method, n_clusters=3, seed=0)
    assert labels.shape == (len(x),)
    assert len(np.unique(labels)) == 3
    assert adjusted_rand_score(y, labels) > 0.95


def test_hdbscan_finds_the_blobs_without_being_told_how_many(blobs):
    x, y = blobs
    # n_clusters only scales the minimum cluster size; a wrong guess must not matter here.
    labels = ev.cluster(x, "hdbscan", n_clusters=7, seed=0)
    assert labels.shape == (len(x),)
    found = labels >= 0
    assert len(np.unique(labels[found])) == 3
    assert found.mean() > 0.9
    assert adjusted_rand_score(y[found], labels[found]) > 0.95


def test_hdbscan_min_cluster_size_scales_with_rows_per_cluster():
    assert ev.hdbscan_min_cluster_size(2000, 69) == 7
    assert ev.hdbscan_min_cluster_size(2000, 4) == 125
    assert ev.hdbscan_min_cluster_size(30, 10) == 5


def test_cluster_rejects_unknown_method(blobs):
    with pytest.raises(ValueError, match="unknown clustering method"):
        ev.cluster(blobs[0], "spectral", 3, 0)


# --- score -----------------------------------------------------------------------------------


def test_score_perfect_clustering_is_one(blobs):
    x, y = blobs
    s = ev.score(x, y + 10, _names(y))  # cluster ids need not match label names
    for metric in ev.EXTERNAL:
        assert s[metric] == pytest.approx(1.0)
    assert set(s) == set(ev.METRICS)
    assert s["silhouette"] > 0.5


def test_score_random_clustering_is_near_zero():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 3))
    truth = _names(rng.integers(0, 4, size=1000))
    s = ev.score(x, rng.integers(0, 4, size=1000), truth)
    assert abs(s["nmi"]) < 0.02
    assert abs(s["ami"]) < 0.02
    assert abs(s["ari"]) < 0.02


def test_score_ignores_unlabelled_rows_in_external_metrics(blobs):
    x, y = blobs
    predicted = ev.cluster(x, "kmeans", 3, seed=0)
    base = ev.score(x, predicted, _names(y))
    rng = np.random.default_rng(3)
    noise_x = rng.normal(scale=10, size=(40, x.shape[1]))
    noisy = ev.score(
        np.vstack([x, noise_x]),
        np.concatenate([predicted, rng.integers(0, 3, size=40)]),
        _names(y) + [None] * 40,
    )
    for metric in ev.EXTERNAL:
        assert noisy[metric] == pytest.approx(base[metric])
    # Internal metrics see every row, so the noise rows do change them.
    assert noisy["silhouette"] != pytest.approx(base["silhouette"])


def test_score_single_cluster_gives_nan_internal_metrics_not_an_exception(blobs):
    x, y = blobs
    s = ev.score(x, np.zeros(len(x), dtype=int), _names(y))
    for metric in ev.INTERNAL:
        assert math.isnan(s[metric])
    assert s["ari"] == pytest.approx(0.0)


def test_score_without_labels_gives_nan_external_metrics(blobs):
    x, y = blobs
    s = ev.score(x, y, [None] * len(y))
    assert all(math.isnan(s[m]) for m in ev.EXTERNAL)
    assert math.isfinite(s["silhouette"])


def test_score_purity_by_hand():
    # Cluster 0 holds a, a, b (majority 2); cluster 1 holds b, c, c (majority 2): 4 of 6 rows.
    truth = ["a", "a", "b", "b", "c", "c"]
    predicted = np.array([0, 0, 0, 1, 1, 1])
    x = np.arange(12, dtype=float).reshape(6, 2)
    assert ev.score(x, predicted, truth)["purity"] == pytest.approx(4 / 6)


def test_score_samples_silhouette_on_large_inputs():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, (1300, 2)), rng.normal(8, 1, (1300, 2))])
    predicted = np.repeat([0, 1], 1300)
    s = ev.score(x, predicted, [None] * len(x), seed=1)
    assert s["silhouette"] == pytest.approx(
        ev.score(x, predicted, [None] * len(x), seed=1)["silhouette"]
    )
    assert 0.6 < s["silhouette"] < 1


# --- baseline representations ----------------------------------------------------------------


def test_spectral_features_are_band_means_then_band_stds():
    mels = np.zeros((2, 3, 4), dtype=np.float16)
    mels[0] = [[0, 0, 2, 2], [1, 1, 1, 1], [4, 0, 4, 0]]
    mels[1] = 5
    out = baselines.spectral_features(mels)
    assert out.shape == (2, 6)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], [1, 1, 2, 1, 0, 2])
    np.testing.assert_allclose(out[1], [5, 5, 5, 0, 0, 0])


def test_spectral_features_chunks_agree_with_one_pass():
    mels = np.random.default_rng(0).normal(size=(7, 5, 9)).astype(np.float32)
    np.testing.assert_allclose(
        baselines.spectral_features(mels, chunk=2), baselines.spectral_features(mels), rtol=1e-6
    )


def test_pca_shape_and_determinism(blobs):
    x, _ = blobs
    a = baselines.pca(x, 2, seed=0)
    assert a.shape == (len(x), 2)
    np.testing.assert_array_equal(a, baselines.pca(x, 2, seed=0))
    assert baselines.pca(x, 50, seed=0).shape == (len(x), x.shape[1])  # capped at the feature count


def test_plain_autoencoder_is_deterministic_and_separates_groups():
    x, y = make_blobs(n_samples=200, n_features=20, centers=2, cluster_std=2.0, random_state=4)
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    threads = torch.get_num_threads()
    torch.manual_seed(123)
    a = baselines.plain_autoencoder(x, latent_dim=4, seed=0, epochs=8)
    # The baseline must leave the caller's torch RNG stream and thread count alone.
    assert torch.rand(1) == expected_next
    assert torch.get_num_threads() == threads
    assert a.shape == (200, 4) and a.dtype == np.float32
    np.testing.assert_array_equal(a, baselines.plain_autoencoder(x, latent_dim=4, seed=0, epochs=8))
    assert not np.allclose(a, baselines.plain_autoencoder(x, latent_dim=4, seed=1, epochs=8))
    found = KMeans(2, n_init=10, random_state=0).fit_predict(a)
    assert adjusted_rand_score(y, found) > 0.9


# --- evaluate and reporting ------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_level_blobs():
    """Four tight blobs in two well separated pairs: 4 'fine' labels, 2 'coarse' ones."""
    centers = [(0, 0), (0, 4), (30, 0), (30, 4)]
    x, y = make_blobs(n_samples=80, centers=centers, cluster_std=0.3, random_state=0)
    return x, {"fine": _names(y), "coarse": ["left" if i < 2 else "right" for i in y]}


@pytest.fixture(scope="module")
def results(two_level_blobs):
    x, labels = two_level_blobs
    rng = np.random.default_rng(0)
    reps = {"raw": x, "noisy": x + rng.normal(scale=0.5, size=x.shape)}
    methods = {"raw": ["kmeans", "agglomerative"], "noisy": ["kmeans", "agglomerative"]}
    return ev.evaluate(reps, labels, n_clusters=4, seeds=(0, 1), methods=methods)


def test_evaluate_gives_one_result_per_representation_method_labels_metric(results):
    assert len(results) == 2 * 2 * 2 * len(ev.METRICS)
    keys = {(r.representation, r.method, r.labels, r.metric) for r in results}
    assert len(keys) == len(results)
    assert {r.representation for r in results} == {"raw", "noisy"}
    assert {r.method for r in results} == {"kmeans", "agglomerative"}
    assert {r.labels for r in results} == {"fine", "coarse"}
    assert all(r.n == 2 for r in results)
    fine = {(r.representation, r.method, r.metric): r for r in results if r.labels == "fine"}
    assert fine[("raw", "kmeans", "ari")].mean == pytest.approx(1.0)


def test_evaluate_defaults_to_kmeans(two_level_blobs):
    x, labels = two_level_blobs
    out = ev.evaluate({"raw": x}, {"fine": labels["fine"]}, n_clusters=4, seeds=(0,))
    assert {r.method for r in out} == {"kmeans"}
    assert len(out) == len(ev.METRICS)
    assert all(r.sd == 0.0 and r.n == 1 for r in out)


def test_evaluate_clusters_per_label_set_when_cluster_counts_differ(two_level_blobs):
    x, labels = two_level_blobs
    out = ev.evaluate({"raw": x}, labels, n_clusters={"fine": 4, "coarse": 2}, seeds=(0,))
    ari = {r.labels: r.mean for r in out if r.metric == "ari"}
    # With 4 clusters for the 2 coarse labels, coarse ARI would be well below 1.
    assert ari == {"fine": pytest.approx(1.0), "coarse": pytest.approx(1.0)}


def test_evaluate_uses_each_seeds_own_array_from_a_list(two_level_blobs):
    x, labels = two_level_blobs
    rng = np.random.default_rng(1)
    # Seed 0 gets the clean blobs, seed 1 an uninformative array: scores must differ.
    per_seed = [x, rng.normal(size=x.shape)]
    out = ev.evaluate(
        {"shared": x, "per seed": per_seed}, {"fine": labels["fine"]}, 4, seeds=(0, 1)
    )
    by = {(r.representation, r.metric): r for r in out}
    assert by[("per seed", "nmi")].sd > 0.3
    assert by[("shared", "nmi")].sd == pytest.approx(0.0, abs=1e-9)
    assert by[("shared", "nmi")].mean == pytest.approx(1.0)


def test_evaluate_checks_its_inputs(two_level_blobs):
    x, labels = two_level_blobs
    with pytest.raises(ValueError, match="per-seed arrays"):
        ev.evaluate({"r": [x]}, labels, 4, seeds=(0, 1))
    with pytest.raises(ValueError, match="unknown clustering methods"):
        ev.evaluate({"r": x}, labels, 4, seeds=(0,), methods={"r": ["dbscan"]})
    with pytest.raises(ValueError, match="rows"):
        ev.evaluate({"r": x[:-1]}, labels, 4, seeds=(0,))
    with pytest.raises(ValueError, match="no entry"):
        ev.evaluate({"r": x}, labels, {"fine": 4}, seeds=(0,))


def test_summary_counts_only_finite_values():
    assert ev._summarise([1.0, math.nan, 3.0]) == (2.0, pytest.approx(math.sqrt(2)), 2)
    mean, sd, n = ev._summarise([math.nan])
    assert math.isnan(mean) and math.isnan(sd) and n == 0


def test_format_table_shows_every_row_with_plus_minus(results):
    table = ev.format_table(results, "fine")
    assert "±" in table
    for name in ("raw", "noisy", "kmeans", "agglomerative", "nmi", "ari", "purity"):
        assert name in table
    assert "1.000 ± 0.000" in table
    assert len(table.splitlines()) == 3 + 4  # title, header, rule, 2 representations x 2 methods


def test_format_cell():
    assert ev.format_cell(0.1394, 0.0041) == "0.139 ± 0.004"
    assert ev.format_cell(91.04, 2.2, "calinski_harabasz") == "91.0 ± 2.2"
    assert ev.format_cell(math.nan, math.nan) == "n/a"


def test_results_frame_and_json(results):
    frame = ev.results_frame(results)
    assert len(frame) == len(results)
    assert list(frame.columns) == [
        "representation",
        "method",
        "labels",
        "metric",
        "mean",
        "sd",
        "n",
    ]
    with_nan = [*results, ev.Result("x", "hdbscan", "fine", "silhouette", math.nan, math.nan, 0)]
    rows = ev.to_json(with_nan)
    assert json.loads(json.dumps(rows, allow_nan=False)) == rows
    assert rows[-1]["mean"] is None
    assert rows[0]["representation"] == results[0].representation


def test_seed_agreement_is_one_for_stable_groups_and_low_for_noise(blobs):
    x, _ = blobs
    rng = np.random.default_rng(0)
    # The same groups, each seed's array a rotation of the last: a retrain that moved nothing.
    rotations = [x @ np.linalg.qr(rng.normal(size=(x.shape[1],) * 2))[0] for _ in range(3)]
    assert ev.seed_agreement(rotations, 3, [0, 1, 2]) == pytest.approx(1.0)
    noise = [rng.normal(size=x.shape) for _ in range(3)]
    assert ev.seed_agreement(noise, 3, [0, 1, 2]) < 0.2


def test_anchored_agreement_keeps_the_first_seeds_grouping_when_others_are_as_good():
    # Four corners of a near-square: left/right and top/bottom cost almost the same. Seeds 1
    # and 2 are slightly wider than tall, so a fresh KMeans flips to left/right; anchored to
    # seed 0's top/bottom (taller than wide), they keep it.
    rng = np.random.default_rng(0)

    def corners(width, height):
        points = [(0, 0), (0, height), (width, 0), (width, height)]
        return np.vstack([rng.normal(c, 0.02, size=(40, 2)) for c in points])

    arrays = [corners(1.0, 1.02), corners(1.02, 1.0), corners(1.02, 1.0)]
    assert ev.seed_agreement(arrays, 2, [0, 1, 2]) < 0.5
    assert ev.anchored_agreement(arrays, 2, [0, 1, 2]) == pytest.approx(1.0)
