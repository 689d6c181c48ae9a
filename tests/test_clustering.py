"""Anchored KMeans: a recluster keeps the previous run's clusters unless a fresh KMeans is
materially better."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from musicvae.model.clustering import ANCHOR_TOLERANCE, anchored_kmeans, kmeans


def _corners(width: float, height: float = 1.0, per_corner: int = 50) -> np.ndarray:
    """Four tight blobs at a rectangle's corners: left/right and top/bottom are both sensible
    2-clusterings, and the wider the rectangle, the better left/right is."""
    rng = np.random.default_rng(0)
    corners = [(0, 0), (0, height), (width, 0), (width, height)]
    return np.vstack([rng.normal(c, 0.02, size=(per_corner, 2)) for c in corners])


def _top_bottom(per_corner: int = 50) -> np.ndarray:
    return np.repeat([0, 1, 0, 1], per_corner)


def _left_right(per_corner: int = 50) -> np.ndarray:
    return np.repeat([0, 0, 1, 1], per_corner)


def test_a_nearly_as_good_previous_grouping_is_kept():
    x = _corners(width=1.02)  # top/bottom costs (1.02)^2 = 4 % more than left/right
    assert adjusted_rand_score(kmeans(x, 2, 0).labels, _left_right()) == 1.0
    clustering, anchored = anchored_kmeans(x, 2, 0, _top_bottom())
    assert anchored
    assert adjusted_rand_score(clustering.labels, _top_bottom()) == 1.0


def test_a_materially_better_fresh_grouping_wins():
    x = _corners(width=1.2)  # top/bottom costs 44 % more, far past the tolerance
    clustering, anchored = anchored_kmeans(x, 2, 0, _top_bottom())
    assert not anchored
    assert adjusted_rand_score(clustering.labels, _left_right()) == 1.0
    assert ANCHOR_TOLERANCE < 0.44


def test_new_tracks_follow_the_anchored_clusters_and_other_cluster_counts_start_fresh():
    x = _corners(width=1.02)
    anchor = _top_bottom()
    anchor[::10] = -1  # tracks the previous run did not have
    clustering, anchored = anchored_kmeans(x, 2, 0, anchor)
    assert anchored and adjusted_rand_score(clustering.labels, _top_bottom()) == 1.0
    _, anchored = anchored_kmeans(x, 3, 0, _top_bottom())
    assert not anchored
    _, anchored = anchored_kmeans(x, 2, 0, None)
    assert not anchored


def test_mini_batches_find_the_same_clusters_and_keep_an_anchor():
    x = _corners(width=1.02, per_corner=500)
    full = kmeans(x, 2, 0)
    batched = kmeans(x, 2, 0, batch_size=64)
    assert adjusted_rand_score(batched.labels, full.labels) == 1.0
    assert batched.inertia <= 1.01 * full.inertia
    clustering, anchored = anchored_kmeans(x, 2, 0, _top_bottom(500), batch_size=64)
    assert anchored and adjusted_rand_score(clustering.labels, _top_bottom(500)) == 1.0


def test_the_recluster_switches_to_mini_batches_above_a_configurable_size():
    from musicvae.catalogue.shards import minibatch_size
    from musicvae.core.config import DEFAULT_MINIBATCH_ABOVE, shard_size
    from musicvae.core.errors import ConfigurationError

    assert minibatch_size(DEFAULT_MINIBATCH_ABOVE, {}) is None
    assert minibatch_size(DEFAULT_MINIBATCH_ABOVE + 1, {}) == shard_size({})
    env = {"MUSICVAE_MINIBATCH_ABOVE": "100", "MUSICVAE_SHARD_SIZE": "40"}
    assert (minibatch_size(100, env), minibatch_size(101, env)) == (None, 40)
    for bad in ("0", "-5", "many"):
        with pytest.raises(ConfigurationError, match="MUSICVAE_SHARD_SIZE"):
            shard_size({"MUSICVAE_SHARD_SIZE": bad})


def test_the_embedding_shards_are_larger_than_the_others_unless_set():
    from musicvae.core.config import embed_shard_size
    from musicvae.core.errors import ConfigurationError

    assert embed_shard_size({}) == 20_000
    assert embed_shard_size({"MUSICVAE_SHARD_SIZE": "300"}) == 1200
    assert embed_shard_size({"MUSICVAE_SHARD_SIZE": "300", "MUSICVAE_EMBED_SHARD_SIZE": "7"}) == 7
    with pytest.raises(ConfigurationError, match="MUSICVAE_EMBED_SHARD_SIZE"):
        embed_shard_size({"MUSICVAE_EMBED_SHARD_SIZE": "0"})


def test_scores_from_counts_equal_sklearns_on_the_labels():
    from collections import Counter

    from sklearn.metrics import normalized_mutual_info_score

    from musicvae.model.clustering import adjusted_rand, agreement

    rng = np.random.default_rng(0)
    for n, k_truth, k_labels in ((50, 3, 4), (200, 6, 8), (7, 1, 3), (30, 5, 1)):
        truth = rng.integers(0, k_truth, n)
        labels = rng.integers(0, k_labels, n)
        pairs = Counter(zip(truth.tolist(), labels.tolist(), strict=True))
        assert adjusted_rand(pairs) == pytest.approx(adjusted_rand_score(truth, labels), abs=1e-12)
        scores = agreement([f"g{t}" for t in truth], labels)
        assert scores["nmi"] == round(normalized_mutual_info_score(truth, labels), 4)
        assert scores["ari"] == round(adjusted_rand_score(truth, labels), 4)
    # Rows without a reference label are left out.
    assert agreement([None, "a", "a", "b"], np.array([0, 1, 1, 0]))["purity"] == 1.0
