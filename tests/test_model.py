import pytest
import torch
from torch import nn

from musicvae.model.vae import HybridVAE, VAEOutput, vae_loss

N_MELS, N_FRAMES, VOCAB, LATENT = 16, 40, 30, 6


@pytest.fixture
def model() -> HybridVAE:
    torch.manual_seed(0)
    return HybridVAE(N_MELS, N_FRAMES, VOCAB, latent_dim=LATENT, width=4)


def batch(b: int = 4):
    g = torch.Generator().manual_seed(1)
    audio = torch.randn(b, N_MELS, N_FRAMES, generator=g)
    lyrics = torch.rand(b, VOCAB, generator=g)
    return audio, lyrics


def flags(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.bool)


def test_output_shapes(model):
    audio, lyrics = batch()
    out = model(audio, lyrics, flags(1, 1, 0, 1), flags(1, 0, 1, 1))
    assert isinstance(out, VAEOutput)
    assert out.audio_recon.shape == (4, N_MELS, N_FRAMES)
    assert out.lyrics_recon.shape == (4, VOCAB)
    assert out.mu.shape == out.logvar.shape == (4, LATENT)


@pytest.mark.parametrize("n_mels, n_frames", [(64, 625), (64, 626), (13, 17)])
def test_audio_decoder_matches_any_input_size(n_mels, n_frames):
    m = HybridVAE(n_mels, n_frames, VOCAB, latent_dim=LATENT, width=4)
    out = m(torch.randn(2, n_mels, n_frames), torch.rand(2, VOCAB), flags(1, 1), flags(1, 1))
    assert out.audio_recon.shape == (2, n_mels, n_frames)


def test_audio_only_posterior_is_the_audio_expert_times_the_prior(model):
    model.eval()
    audio, lyrics = batch()
    has_audio, no_lyrics = flags(1, 1, 1, 1), flags(0, 0, 0, 0)
    mu, logvar = model.encode(audio, lyrics, has_audio, no_lyrics)

    mu_a, logvar_a = model.audio_encoder(audio).chunk(2, dim=-1)
    precision = 1.0 + torch.exp(-logvar_a)  # prior N(0, 1) has precision 1
    torch.testing.assert_close(mu, mu_a * torch.exp(-logvar_a) / precision)
    torch.testing.assert_close(logvar, -torch.log(precision))

    # The lyrics the sample does not "have" cannot move it.
    mu2, _ = model.encode(audio, torch.rand_like(lyrics) * 100, has_audio, no_lyrics)
    torch.testing.assert_close(mu, mu2)


def test_both_experts_narrow_the_posterior(model):
    model.eval()
    audio, lyrics = batch()
    _, logvar_a = model.encode(audio, lyrics, flags(1, 1, 1, 1), flags(0, 0, 0, 0))
    _, logvar_ab = model.encode(audio, lyrics, flags(1, 1, 1, 1), flags(1, 1, 1, 1))
    assert (logvar_ab < logvar_a).all()


def test_no_modality_gives_the_prior(model):
    model.eval()
    audio, lyrics = batch()
    mu, logvar = model.encode(audio, lyrics, flags(0, 0, 0, 0), flags(0, 0, 0, 0))
    assert not mu.any() and not logvar.any()


def test_eval_is_deterministic_and_training_samples(model):
    audio, lyrics = batch()
    args = (audio, lyrics, flags(1, 1, 1, 1), flags(1, 1, 1, 1))
    model.eval()
    torch.testing.assert_close(model(*args).audio_recon, model(*args).audio_recon)
    model.train()
    assert not torch.equal(model(*args).audio_recon, model(*args).audio_recon)


def test_loss_ignores_the_missing_modality(model):
    model.eval()
    audio, lyrics = batch()
    has_audio, has_lyrics = flags(1, 0, 1, 1), flags(1, 1, 0, 1)
    out = model(audio, lyrics, has_audio, has_lyrics)
    base = vae_loss(out, audio, lyrics, has_audio, has_lyrics, beta=1.0, lyrics_weight=10.0)

    garbage_audio, garbage_lyrics = audio.clone(), lyrics.clone()
    garbage_audio[1] = float("nan")
    garbage_lyrics[2] = float("nan")
    other = vae_loss(out, garbage_audio, garbage_lyrics, has_audio, has_lyrics, 1.0, 10.0)
    for key in ("total", "audio", "lyrics", "kl"):
        torch.testing.assert_close(base[key], other[key])

    # Squared error summed over each sample's elements, averaged over the samples with audio.
    expected_audio = (out.audio_recon - audio)[has_audio].pow(2).sum() / has_audio.sum()
    torch.testing.assert_close(base["audio"], expected_audio)
    torch.testing.assert_close(
        base["total"], base["audio"] + 10.0 * base["lyrics"] + 1.0 * base["kl"]
    )


def test_the_band_statistics_are_reconstructed_for_the_rows_with_audio(model):
    model.eval()
    audio, lyrics = batch()
    has_audio, has_lyrics = flags(1, 0, 1, 1), flags(1, 1, 1, 1)
    model.band_mean.fill_(0.5)
    model.band_std.fill_(2.0)
    out = model(audio, lyrics, has_audio, has_lyrics)
    target = (torch.cat([audio.mean(dim=2), audio.std(dim=2)], dim=1) - 0.5) / 2.0
    torch.testing.assert_close(out.bands, target)
    parts = vae_loss(out, audio, lyrics, has_audio, has_lyrics, 1.0, 10.0, bands_weight=3.0)
    expected = (out.bands_recon - target)[has_audio].pow(2).sum() / has_audio.sum()
    torch.testing.assert_close(parts["bands"], expected)
    torch.testing.assert_close(
        parts["total"], parts["audio"] + 3.0 * expected + 10.0 * parts["lyrics"] + parts["kl"]
    )
    without = HybridVAE(N_MELS, N_FRAMES, VOCAB, latent_dim=LATENT, width=4, bands_head=False)
    assert without(audio, lyrics, has_audio, has_lyrics).bands_recon is None


def test_kl_is_zero_at_the_prior_and_positive_elsewhere():
    zeros = torch.zeros(3, LATENT)
    out = VAEOutput(torch.zeros(3, 2, 2), torch.zeros(3, 4), zeros, zeros)
    args = (torch.zeros(3, 2, 2), torch.zeros(3, 4), flags(1, 1, 1), flags(1, 1, 1))
    assert vae_loss(out, *args, beta=1.0, lyrics_weight=1.0)["kl"] == 0
    shifted = out._replace(mu=torch.ones(3, LATENT))
    assert vae_loss(shifted, *args, beta=1.0, lyrics_weight=1.0)["kl"] == pytest.approx(LATENT / 2)


def test_gradients_reach_both_experts_and_decoders(model):
    audio, lyrics = batch()
    has = flags(1, 1, 1, 1)
    loss = vae_loss(model(audio, lyrics, has, has), audio, lyrics, has, has, 1.0, 10.0)["total"]
    loss.backward()
    for name in ("audio_encoder", "lyrics_encoder", "audio_decoder", "lyrics_decoder"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert any(g.abs().sum() > 0 for g in grads), name


def test_mixed_precision_forward_and_backward(model):
    # The GPU path trains under bfloat16 autocast; CPU autocast exercises the same dtype mixing.
    audio, lyrics = batch()
    has_audio, has_lyrics = flags(1, 0, 1, 1), flags(1, 1, 0, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(audio, lyrics, has_audio, has_lyrics)
        loss = vae_loss(out, audio, lyrics, has_audio, has_lyrics, 1.0, 10.0)
    assert loss["total"].dtype == torch.float32 and torch.isfinite(loss["total"])
    loss["total"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_kwargs_rebuild_the_same_architecture(model):
    clone = HybridVAE(**model.kwargs)
    clone.load_state_dict(model.state_dict())


def test_default_model_is_small_and_has_no_giant_dense_layer():
    m = HybridVAE(n_mels=64, n_frames=626, vocab_size=512)
    assert sum(p.numel() for p in m.parameters()) < 5_000_000
    widest = max(layer.in_features for layer in m.modules() if isinstance(layer, nn.Linear))
    assert widest <= 4096


def test_a_lone_audio_row_trains(model):
    """A batch where one row has audio (the last batch, or modality dropout) still trains, and
    the band statistics' normalisation then leaves its running statistics as they were."""
    model.train()
    audio, lyrics = batch(3)
    norm = model.audio_encoder.band_norm
    before = norm.running_mean.clone()
    out = model(audio, lyrics, flags(1, 0, 0), flags(1, 1, 1))
    assert torch.isfinite(out.mu).all()
    torch.testing.assert_close(norm.running_mean, before)
    model(audio, lyrics, flags(1, 1, 0), flags(1, 1, 1))
    assert not torch.equal(norm.running_mean, before)
