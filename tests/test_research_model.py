"""The research baseline used by the benchmarks: layer shapes, loss, features, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from benchmarks.research_model import (
    FLAT_DIM,
    RESEARCH_EPOCHS,
    RESEARCH_FRAMES,
    RESEARCH_HOP,
    RESEARCH_N_MELS,
    RESEARCH_SAMPLE_RATE,
    ResearchOutput,
    ResearchVAE,
    embed_research,
    research_features,
    research_loss,
    train_research,
)


@pytest.fixture(scope="module")
def model() -> ResearchVAE:
    torch.manual_seed(0)
    return ResearchVAE().eval()


def test_constants_match_the_description():
    assert RESEARCH_EPOCHS == 50
    assert FLAT_DIM == 256 * 4 * 75 == 76_800
    # librosa's centred frames: 1 + n // hop must be exactly 1200 for 29 s at 22050 Hz.
    assert 1 + int(29 * RESEARCH_SAMPLE_RATE) // RESEARCH_HOP == RESEARCH_FRAMES == 1200


def test_shapes_and_sigmoid_range(model):
    audio, lyrics = torch.rand(2, 1, 64, 1200), torch.rand(2, 100)
    with torch.no_grad():
        out = model(audio, lyrics)
    assert out.audio_recon.shape == (2, 1, 64, 1200)
    assert out.lyrics_recon.shape == (2, 100)
    assert out.mu.shape == out.logvar.shape == (2, 32)
    assert float(out.audio_recon.min()) >= 0.0 and float(out.audio_recon.max()) <= 1.0
    # [B, 64, 1200] without the channel axis is accepted too.
    with torch.no_grad():
        assert model(audio[:, 0], lyrics).audio_recon.shape == (2, 1, 64, 1200)


def test_flatten_width_and_the_big_linear(model):
    with torch.no_grad():
        feature_map = model.audio_convs(torch.zeros(1, 1, 64, 1200))
    assert feature_map.shape == (1, 256, 4, 75)
    assert feature_map.flatten(1).shape[1] == 76_800
    assert isinstance(model.audio_fc, torch.nn.Linear)
    assert (model.audio_fc.in_features, model.audio_fc.out_features) == (76_800, 512)
    assert model.audio_fc.weight.numel() == 76_800 * 512  # ~39.3M weights
    assert (model.lyrics_fc.in_features, model.lyrics_fc.out_features) == (100, 128)
    assert model.fc_mu.in_features == model.fc_logvar.in_features == 640
    assert (model.decode_fc.in_features, model.decode_fc.out_features) == (32, 640)
    assert (model.audio_defc.in_features, model.audio_defc.out_features) == (512, 76_800)
    convs = [m for m in model.audio_convs if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (1, 32),
        (32, 64),
        (64, 128),
        (128, 256),
    ]
    assert all(
        c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (1, 1) for c in convs
    )
    deconvs = [m for m in model.audio_deconvs if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in deconvs] == [
        (256, 128),
        (128, 64),
        (64, 32),
        (32, 1),
    ]
    assert model.n_params == sum(p.numel() for p in model.parameters())
    assert 79e6 < model.n_params < 81e6


def test_loss_components():
    torch.manual_seed(1)
    audio, lyrics = torch.rand(3, 1, 64, 1200), torch.rand(3, 100)
    out = ResearchOutput(
        audio_recon=torch.rand(3, 1, 64, 1200),
        lyrics_recon=torch.rand(3, 100),
        mu=torch.randn(3, 32),
        logvar=torch.randn(3, 32) * 0.1,
    )
    parts = research_loss(out, audio, lyrics)
    assert torch.allclose(parts["audio"], F.mse_loss(out.audio_recon, audio))
    assert torch.allclose(parts["lyrics"], ((out.lyrics_recon - lyrics) ** 2).mean())
    kl = 0.5 * (out.mu**2 + out.logvar.exp() - 1 - out.logvar).sum(dim=1).mean()
    assert torch.allclose(parts["kl"], kl)
    assert torch.allclose(parts["total"], parts["audio"] + 50 * parts["lyrics"] + kl)
    # A perfect reconstruction at the prior costs nothing; the audio target may lack the channel.
    perfect = ResearchOutput(audio, lyrics, torch.zeros(3, 32), torch.zeros(3, 32))
    assert float(research_loss(perfect, audio[:, 0], lyrics)["total"]) == pytest.approx(0.0)


def test_research_features_on_wav_and_short_mp3(tmp_path):
    sr = RESEARCH_SAMPLE_RATE
    t = np.arange(int(29 * sr)) / sr
    wav = tmp_path / "tone.wav"
    sf.write(wav, (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    mp3 = tmp_path / "short.mp3"  # 5 s: padded out to 1200 frames
    short = 0.3 * np.sin(2 * np.pi * 220 * t[: 5 * sr]) + 0.01 * np.random.default_rng(
        0
    ).standard_normal(5 * sr)
    sf.write(mp3, short.astype(np.float32), sr, format="MP3")

    feats = research_features([wav, mp3])
    assert feats.shape == (2, RESEARCH_N_MELS, RESEARCH_FRAMES) and feats.dtype == np.float32
    assert np.isfinite(feats).all() and feats.min() >= 0.0 and feats.max() <= 1.0
    assert feats[0].max() == pytest.approx(1.0) and feats[0].min() == pytest.approx(0.0)
    # The short clip has 1 + 5 * 22050 // 533 = 207 real frames, then zero padding.
    assert feats[1, :, :200].max() == pytest.approx(1.0)
    assert not feats[1, :, 260:].any()


def test_train_research_and_embed():
    rng = np.random.default_rng(0)
    audio = rng.random((8, 64, 1200), dtype=np.float32)
    lyrics = rng.random((8, 100), dtype=np.float32)
    seen = []
    model, history = train_research(
        audio, lyrics, epochs=2, seed=0, batch_size=4, on_epoch=lambda e, r: seen.append(e)
    )
    assert seen == [1, 2] and [r["epoch"] for r in history] == [1, 2]
    assert all(math.isfinite(r["loss"]) and r["samples_per_s"] > 0 for r in history)
    assert history[-1]["loss"] < history[0]["loss"]
    assert not model.training

    emb = embed_research(model, audio[:5], lyrics[:5], batch_size=2)
    assert emb.shape == (5, 32) and emb.dtype == np.float32 and np.isfinite(emb).all()
    # Posterior means, not samples: the same whatever the batching (up to float rounding).
    again = embed_research(model, audio[:5], lyrics[:5])
    np.testing.assert_allclose(emb, again, rtol=1e-4, atol=1e-6)


def test_train_research_is_seeded():
    rng = np.random.default_rng(1)
    audio = rng.random((4, 64, 1200), dtype=np.float32)
    lyrics = rng.random((4, 100), dtype=np.float32)
    _, a = train_research(audio, lyrics, epochs=1, seed=3, batch_size=4)
    _, b = train_research(audio, lyrics, epochs=1, seed=3, batch_size=4)
    assert a[0]["loss"] == b[0]["loss"]


def test_train_research_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="64, 1200"):
        train_research(np.zeros((2, 64, 625), np.float32), np.zeros((2, 100), np.float32), 1)
