import io
import math

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from musicvae.model.train import fit, split_rows
from musicvae.model.trained import TrainConfig, TrainedModel, TrainingData
from musicvae.model.vae import HybridVAE

N_MELS, N_FRAMES, VOCAB = 16, 32, 20


def two_groups(n: int = 96, seed: int = 0) -> tuple[TrainingData, np.ndarray]:
    """Group 0: loud low mel bands and words 0-9; group 1: loud high bands and words 10-19.
    Every 7th row lacks audio and every 7th (offset 3) lacks lyrics."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    audio = rng.normal(-40.0, 5.0, (n, N_MELS, N_FRAMES)).astype(np.float32)
    lyrics = np.zeros((n, VOCAB), dtype=np.float32)
    for i, group in enumerate(labels):
        audio[i, 0:5] += 15.0 if group == 0 else 0.0
        audio[i, 11:16] += 15.0 if group == 1 else 0.0
        words = rng.choice(np.arange(10) + 10 * group, size=4, replace=False)
        lyrics[i, words] = rng.uniform(0.5, 1.0, size=4)
        lyrics[i] /= np.linalg.norm(lyrics[i])
    has_audio, has_lyrics = np.ones(n, dtype=bool), np.ones(n, dtype=bool)
    has_audio[::7] = False
    has_lyrics[3::7] = False
    audio[~has_audio] = 0.0
    lyrics[~has_lyrics] = 0.0
    return TrainingData(audio.astype(np.float16), has_audio, lyrics, has_lyrics), labels


def tiny(**overrides) -> TrainConfig:
    base = {
        "epochs": 4,
        "latent_dim": 4,
        "width": 8,
        "batch_size": 16,
        "kl_warmup_epochs": 2,
        "lyrics_weight": float(VOCAB),  # mean square of a unit-norm row is 1/VOCAB
        "learning_rate": 3e-3,
    }
    return TrainConfig(**{**base, **overrides})


def parameters(model: TrainedModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.model.state_dict().items()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float()), key


def test_training_separates_the_groups():
    data, labels = two_groups()
    trained = fit(data, tiny(epochs=15))
    losses = [h["train_loss"] for h in trained.history]
    assert losses[-1] < losses[0]
    assert trained.history[-1]["beta"] == 1.0 and trained.history[0]["beta"] == 0.0

    z = trained.embed(data)
    assert z.shape == (len(labels), 4) and z.dtype == np.float32 and np.isfinite(z).all()
    pred = KMeans(n_clusters=2, n_init=10, random_state=0).fit_predict(z)
    accuracy = max((pred == labels).mean(), (pred != labels).mean())
    assert accuracy > 0.9

    # Single-modality rows embed too, and land with their own group.
    for only in (~data.has_audio, ~data.has_lyrics):
        assert only.any()
        assert max((pred[only] == labels[only]).mean(), (pred[only] != labels[only]).mean()) > 0.9


def test_history_records_every_epoch():
    data, _ = two_groups(n=40)
    trained = fit(data, tiny(epochs=2))
    assert [h["epoch"] for h in trained.history] == [1, 2]
    expected = {"epoch", "train_loss", "val_loss", "audio", "lyrics", "kl", "beta"}
    assert expected | {"samples_per_s", "seconds"} <= trained.history[0].keys()
    assert all(math.isfinite(h["val_loss"]) and h["samples_per_s"] > 0 for h in trained.history)
    assert trained.best_val_loss == min(h["val_loss"] for h in trained.history)


def test_normalisation_uses_training_rows_with_audio_only():
    data, _ = two_groups(n=40)
    trained = fit(data, tiny(epochs=1))
    assert -40 < trained.audio_mean < -30  # the all-zero rows without audio would pull it up
    assert 5 < trained.audio_std < 15


def test_same_seed_same_weights_other_seed_differs():
    data, _ = two_groups(n=48)
    a = parameters(fit(data, tiny(epochs=2)))
    b = parameters(fit(data, tiny(epochs=2)))
    c = parameters(fit(data, tiny(epochs=2, seed=1)))
    assert_same_weights(a, b)
    assert not torch.equal(a["lyrics_decoder.2.weight"], c["lyrics_decoder.2.weight"])


def test_resume_reaches_the_uninterrupted_weights():
    data, _ = two_groups(n=48)
    config = tiny(epochs=4, kl_warmup_epochs=3)
    straight = fit(data, config)

    checkpoints = {}

    def keep(epoch: int, checkpoint: dict) -> None:
        buf = io.BytesIO()
        torch.save(checkpoint, buf)  # checkpoints must serialise, and load without pickle code
        checkpoints[epoch] = buf.getvalue()

    fit(data, tiny(epochs=2, kl_warmup_epochs=3), on_epoch=keep)
    assert sorted(checkpoints) == [1, 2]
    resume = torch.load(io.BytesIO(checkpoints[2]))
    resumed = fit(data, config, resume=resume)

    assert_same_weights(parameters(straight), parameters(resumed))
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert resumed.best_val_loss == straight.best_val_loss


def test_checkpoints_do_not_alias_training_state():
    data, _ = two_groups(n=40)
    seen = []
    fit(data, tiny(epochs=2), on_epoch=lambda epoch, ckpt: seen.append(ckpt))
    first, second = (c["model"]["lyrics_decoder.2.weight"] for c in seen)
    assert not torch.equal(first, second)


def test_single_modality_rows_embed_without_nan():
    data, _ = two_groups(n=40)
    trained = fit(data, tiny(epochs=1))
    audio_only = TrainingData(data.audio, np.ones(40, bool), data.lyrics, np.zeros(40, bool))
    lyrics_only = TrainingData(data.audio, np.zeros(40, bool), data.lyrics, np.ones(40, bool))
    neither = TrainingData(data.audio, np.zeros(40, bool), data.lyrics, np.zeros(40, bool))
    for subset in (audio_only, lyrics_only):
        z = trained.embed(subset, batch_size=7)
        assert z.shape == (40, 4) and np.isfinite(z).all() and np.abs(z).sum() > 0
    assert not trained.posterior_means(neither).any()  # the prior mean


def test_embeddings_are_the_posterior_means():
    data, _ = two_groups(n=40)
    trained = fit(data, tiny(epochs=1))
    assert trained.latent_mean is None and trained.latent_std is None
    np.testing.assert_array_equal(trained.embed(data), trained.posterior_means(data))
    assert trained.state()["latent_mean"] is None


def test_a_model_saved_with_latent_scaling_still_embeds_standardised_means():
    data, _ = two_groups(n=40)
    trained = fit(data, tiny(epochs=1))
    mu = trained.posterior_means(data)
    state = trained.state()
    state["latent_mean"], state["latent_std"] = mu.mean(axis=0).tolist(), mu.std(axis=0).tolist()
    restored = TrainedModel.from_state(state, device="cpu")
    z = restored.embed(data)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=0), 1, rtol=1e-3)


def test_a_model_saved_before_latent_scaling_embeds_raw_means():
    data, _ = two_groups(n=24)
    trained = fit(data, tiny(epochs=1))
    state = {k: v for k, v in trained.state().items() if not k.startswith("latent_")}
    restored = TrainedModel.from_state(state, device="cpu")
    np.testing.assert_array_equal(restored.embed(data), trained.posterior_means(data))


def test_state_round_trip_embeds_identically():
    data, _ = two_groups(n=40)
    trained = fit(data, tiny(epochs=1))
    buf = io.BytesIO()
    torch.save(trained.state(), buf)
    restored = TrainedModel.from_state(torch.load(io.BytesIO(buf.getvalue())), device="cpu")
    assert restored.config == trained.config
    assert restored.history == trained.history
    np.testing.assert_array_equal(restored.embed(data), trained.embed(data))


def test_a_model_saved_before_band_statistics_still_loads():
    """A champion trained by the previous code (no band statistics in the audio expert, and no
    "band_stats" entry in its kwargs) must still load and embed after an upgrade."""
    data, _ = two_groups(n=24)
    trained = fit(data, tiny(epochs=1))
    old = HybridVAE(**{**trained.model.kwargs, "band_stats": False, "bands_head": False})
    state = {**trained.state(), "state_dict": old.state_dict()}
    state["model_kwargs"] = {
        k: v for k, v in old.kwargs.items() if k not in ("band_stats", "bands_head")
    }
    restored = TrainedModel.from_state(state, device="cpu")
    assert restored.model.audio_encoder.band_norm is None
    z = restored.embed(data)
    assert z.shape == (24, trained.config.latent_dim) and np.isfinite(z).all()


def test_a_model_saved_before_the_band_statistics_decoder_still_loads():
    data, _ = two_groups(n=24)
    trained = fit(data, tiny(epochs=1))
    old = HybridVAE(**{**trained.model.kwargs, "bands_head": False})
    state = {**trained.state(), "state_dict": old.state_dict()}
    state["model_kwargs"] = {k: v for k, v in old.kwargs.items() if k != "bands_head"}
    restored = TrainedModel.from_state(state, device="cpu")
    assert restored.model.bands_decoder is None
    assert np.isfinite(restored.embed(data)).all()


def test_the_band_statistics_target_is_standardised_on_the_training_rows():
    data, _ = two_groups(n=40)
    config = tiny(epochs=1)
    trained = fit(data, config)
    train_rows, _ = split_rows(40, config.val_fraction, config.seed)
    with_audio = train_rows[data.has_audio[train_rows]]
    assert 2 <= len(with_audio) < len(train_rows)  # rows without audio take no part
    audio = (data.audio[with_audio].astype(np.float64) - trained.audio_mean) / trained.audio_std
    bands = np.concatenate([audio.mean(axis=2), audio.std(axis=2, ddof=1)], axis=1)
    model = trained.model
    np.testing.assert_allclose(model.band_mean.numpy(), bands.mean(axis=0), atol=1e-4)
    np.testing.assert_allclose(model.band_std.numpy(), bands.std(axis=0, ddof=1), rtol=1e-3)
    assert trained.history[0]["bands"] > 0


def test_early_stopping_on_a_plateau_keeps_the_best_weights():
    data, _ = two_groups(n=48)
    # With a zero learning rate the weights cannot move, so validation loss plateaus at once.
    config = tiny(epochs=12, learning_rate=0.0, patience=1, kl_warmup_epochs=0)
    checkpoints = []
    trained = fit(data, config, on_epoch=lambda epoch, ckpt: checkpoints.append(ckpt))
    assert trained.stopped_early
    assert len(trained.history) < config.epochs
    assert trained.best_val_loss == min(h["val_loss"] for h in trained.history)

    # Resuming from the final checkpoint of a stopped run trains no further.
    resumed = fit(data, config, resume=checkpoints[-1])
    assert resumed.stopped_early and resumed.history == trained.history
    assert_same_weights(parameters(resumed), parameters(trained))


def test_training_data_rejects_mismatched_rows():
    data, _ = two_groups(n=10)
    with pytest.raises(ValueError, match="same rows"):
        TrainingData(data.audio, data.has_audio[:5], data.lyrics, data.has_lyrics)


def test_too_few_rows_to_split():
    data, _ = two_groups(n=1)
    with pytest.raises(ValueError, match="at least 2 rows"):
        fit(data, tiny())
