"""Cluster tuning: the DEC target, where its centres come from, and what it does to a latent."""

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from musicvae.model.cluster_tuning import frozen_clusters, sharpened, soft_assignments
from musicvae.model.train import fit
from musicvae.model.trained import TrainConfig, TrainedModel, TrainingData
from musicvae.retrain.steps import RetrainParams

GROUPS, PER_GROUP, PATCHES, DIM = 3, 30, 4, 24


def _patch_data(seed: int = 0) -> tuple[TrainingData, np.ndarray]:
    """Three groups of tracks whose patches scatter around a group centre (overlapping), the
    last track of each group with one patch fewer (zero padding)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 0.6, (GROUPS, DIM))
    truth = np.repeat(np.arange(GROUPS), PER_GROUP)
    track = centres[truth] + rng.normal(0.0, 0.5, (len(truth), DIM))
    patches = track[:, None] + rng.normal(0.0, 1.0, (len(truth), PATCHES, DIM))
    patches[PER_GROUP - 1 :: PER_GROUP, -1] = 0.0
    n = len(truth)
    data = TrainingData(
        patches.astype(np.float32),
        np.ones(n, bool),
        np.zeros((n, 1), np.float32),
        np.zeros(n, bool),
        patches=True,
    )
    return data, truth


def _within_share(embedding: np.ndarray, labels: np.ndarray) -> float:
    """Within-cluster sum of squares over the total: how tightly the rows gather."""
    centred = embedding - embedding.mean(axis=0)
    within = sum(
        ((embedding[labels == j] - embedding[labels == j].mean(axis=0)) ** 2).sum()
        for j in np.unique(labels)
    )
    return float(within / (centred**2).sum())


def _fit(data: TrainingData, seed: int, clusters: int) -> TrainedModel:
    config = TrainConfig(epochs=8, seed=seed, clusters=clusters, cluster_epochs=15)
    return fit(data, config)


def test_the_target_sharpens_each_row_and_stays_a_distribution():
    q = soft_assignments(torch.randn(50, 4), torch.randn(3, 4))
    p = sharpened(q)
    assert torch.allclose(q.sum(dim=1), torch.ones(50)) and torch.allclose(
        p.sum(dim=1), torch.ones(50)
    )
    entropy = (-(p * p.log()).sum(dim=1).mean(), -(q * q.log()).sum(dim=1).mean())
    assert entropy[0] < entropy[1]


def test_centres_come_from_the_frozen_features_whatever_the_training_seed():
    data, truth = _patch_data()
    labels = frozen_clusters(data, GROUPS)
    assert np.array_equal(labels, frozen_clusters(data, GROUPS))
    assert adjusted_rand_score(truth, labels) > 0.5


def test_a_log_mel_model_cannot_be_cluster_tuned():
    data, _ = _patch_data()
    mel = TrainingData(data.audio, data.has_audio, data.lyrics, data.has_lyrics)  # an image
    with pytest.raises(ValueError, match="audio_frontend='musicnn'"):
        frozen_clusters(mel, GROUPS)


def test_no_more_clusters_than_tracks_with_audio():
    data, _ = _patch_data()
    assert len(np.unique(frozen_clusters(data, 200))) == GROUPS * PER_GROUP
    silent = TrainingData(data.audio, np.zeros(len(data), bool), data.lyrics, data.has_lyrics, True)
    with pytest.raises(ValueError, match="has none"):
        frozen_clusters(silent, GROUPS)


def test_tuning_gathers_tracks_and_retrains_agree():
    data, _ = _patch_data()
    plain = [_fit(data, seed, clusters=0).embed(data) for seed in (0, 1)]
    tuned = [_fit(data, seed, clusters=GROUPS).embed(data) for seed in (0, 1)]
    assert np.isfinite(tuned[0]).all()
    frozen = frozen_clusters(data, GROUPS)
    for before, after in zip(plain, tuned, strict=True):
        assert _within_share(after, frozen) < 0.8 * _within_share(before, frozen)
    agreement = [_seed_agreement(z) for z in (plain, tuned)]
    assert agreement[1] > max(agreement[0], 0.8)


def _seed_agreement(embeddings: list[np.ndarray]) -> float:
    labels = [KMeans(GROUPS, n_init=10, random_state=0).fit_predict(z) for z in embeddings]
    return adjusted_rand_score(labels[0], labels[1])


def test_the_retrain_tunes_a_musicnn_model_towards_its_cluster_count():
    assert RetrainParams(n_clusters=12).train_config().clusters == 12
    assert RetrainParams(n_clusters=12, audio_frontend="mel").train_config().clusters == 0
    config = RetrainParams(n_clusters=12).train_config()
    assert TrainConfig.from_dict(config.to_dict()) == config
