"""Embedding drift between two latent spaces of the same tracks."""

import numpy as np
import pytest

from musicvae.model.latent_drift import embedding_drift, knn_overlap, linear_cka


@pytest.fixture
def space():
    return np.random.default_rng(0).normal(size=(300, 16))


def test_a_rotated_and_scaled_space_has_not_drifted(space):
    rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(16, 16)))
    moved = 3.0 * space @ rotation
    assert knn_overlap(space, moved) == pytest.approx(1.0)
    assert linear_cka(space, moved) == pytest.approx(1.0)


def test_an_unrelated_space_has_drifted_and_some_noise_drifts_a_little(space):
    other = np.random.default_rng(2).normal(size=space.shape)
    noisy = space + 0.3 * np.random.default_rng(3).normal(size=space.shape)
    assert knn_overlap(space, other) < 0.1 < knn_overlap(space, noisy) < 0.95
    assert linear_cka(space, other) < 0.2 < linear_cka(space, noisy) < 1.0
    drift = embedding_drift(noisy, space, against_version=4)
    assert drift["against_version"] == 4 and drift["tracks"] == 300
    assert drift["knn_overlap_at_10"] == round(knn_overlap(noisy, space), 4)
