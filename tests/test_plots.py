"""Every figure is written as a real PNG and leaves no open matplotlib figure behind."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest

from musicvae.model import plots
from musicvae.model.evaluation import Result

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path, expected):
    assert path == expected
    data = expected.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 2000
    assert plt.get_fignums() == []


def test_latent_map_with_more_labels_than_top_and_unlabelled_rows(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 64))  # wider than 50: goes through PCA first
    labels = [None if i % 7 == 0 else f"genre {i % 12}" for i in range(60)]
    out = tmp_path / "maps" / "latent.png"  # the parent folder is created
    _assert_png(plots.latent_map(x, labels, out, top=5, seed=0, title="test"), out)


def test_latent_map_rejects_mismatched_labels(tmp_path):
    with pytest.raises(ValueError):
        plots.latent_map(np.zeros((5, 2)), ["a"] * 4, tmp_path / "x.png")


def test_contingency_heatmap_with_noise_and_unlabelled_rows(tmp_path):
    rng = np.random.default_rng(1)
    truth = [None if i % 9 == 0 else f"g{i % 20}" for i in range(300)]
    predicted = rng.integers(-1, 12, size=300)  # -1: HDBSCAN noise
    out = tmp_path / "contingency.png"
    _assert_png(plots.contingency_heatmap(truth, predicted, out, top=15), out)


def test_contingency_orders_clusters_by_the_label_they_hold():
    truth = ["a"] * 5 + ["b"] * 3
    predicted = np.array([7, 7, 7, 7, 2, 2, 2, 2])
    names, clusters, counts = plots._contingency(truth, predicted, top=15)
    assert names == ["a", "b"]
    assert clusters.tolist() == [7, 2]
    assert counts.tolist() == [[4, 1], [0, 3]]
    _, clusters, _ = plots._contingency(truth, np.array([-1, -1, -1, 0, 0, 5, 5, 5]), top=15)
    assert clusters.tolist() == [0, 5, -1]


def test_reconstructions(tmp_path):
    rng = np.random.default_rng(2)
    originals = rng.normal(size=(3, 32, 40)).astype(np.float16)
    recons = originals * 0.5
    out = tmp_path / "recon.png"
    _assert_png(plots.reconstructions(originals, recons, out, titles=["a", "b", "c"]), out)
    single = tmp_path / "single.png"
    _assert_png(plots.reconstructions(originals[:1], recons[:1], single), single)
    with pytest.raises(ValueError):
        plots.reconstructions(originals, recons[:2], tmp_path / "bad.png")


def _results() -> list[Result]:
    rows = []
    for rep, method, base in (("hybrid VAE", "kmeans", 0.14), ("PCA", "kmeans", 0.11)):
        for metric in ("nmi", "ami", "ari", "purity", "davies_bouldin"):
            rows.append(Result(rep, method, "genre", metric, base, 0.004, 3))
    rows.append(Result("spectral", "hdbscan", "genre", "nmi", math.nan, math.nan, 0))
    return rows


def test_results_table_image(tmp_path):
    out = tmp_path / "table.png"
    _assert_png(plots.results_table_image(_results(), out, labels="genre"), out)
    lower = tmp_path / "table_db.png"
    metrics = ("nmi", "davies_bouldin")
    _assert_png(plots.results_table_image(_results(), lower, metrics=metrics), lower)


def test_results_table_image_without_matching_results(tmp_path):
    out = tmp_path / "empty.png"
    _assert_png(plots.results_table_image(_results(), out, labels="quadrant"), out)


def test_best_respects_metric_direction():
    rows = [("hybrid VAE", "kmeans"), ("PCA", "kmeans")]
    cells = {(r.representation, r.method, r.metric): r for r in _results()}
    cells[("PCA", "kmeans", "davies_bouldin")].mean = 0.05
    assert plots._best(cells, rows, "nmi") == 0.14
    assert plots._best(cells, rows, "davies_bouldin") == 0.05


def test_training_curves(tmp_path):
    history = [
        {"epoch": e + 1, "train_loss": 900 / (e + 1), "val_loss": 950 / (e + 1), "beta": e / 4}
        for e in range(12)
    ]
    out = tmp_path / "curves.png"
    _assert_png(plots.training_curves(history, out), out)
    empty = tmp_path / "empty_curves.png"
    _assert_png(plots.training_curves([], empty), empty)
