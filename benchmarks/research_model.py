"""A faithful re-implementation of the research model musicvae is compared against.

It lives under benchmarks/ on purpose: it is the *baseline*, never part of the package. Its
definition is the research code's description, kept as written:

Features
    mel-spectrogram image 64 x 1200 of a 29 s clip at 22050 Hz, computed per file with
    ``librosa.load(path, sr=22050, duration=29)`` -> ``librosa.feature.melspectrogram(n_mels=64,
    hop_length=533)`` -> ``librosa.power_to_db(ref=np.max)`` -> min-max scaled to [0, 1] per clip
    (the decoder ends in a sigmoid); lyrics as TF-IDF over 100 terms
    (``TfidfVectorizer(max_features=100)``).

Encoder
    audio: 4 x Conv2d(k=4, s=2, p=1) 1 -> 32 -> 64 -> 128 -> 256, ReLU, on 1 x 64 x 1200
    -> 256 x 4 x 75 = 76,800 -> flatten -> Linear(76800, 512);
    lyrics: Linear(100, 128); concatenate (640) -> Linear -> mu (32), Linear -> logvar (32).

Decoder (mirrored)
    z -> Linear(32, 512 + 128) -> audio: Linear(512, 76800) -> 256 x 4 x 75 ->
    4 x ConvTranspose2d(k=4, s=2, p=1) 256 -> 128 -> 64 -> 32 -> 1, sigmoid;
    lyrics: Linear(128, 100), linear output.

Objective
    MSE(audio) + 50 * MSE(lyrics) + KL (beta = 1); Adam, lr 1e-3, batch 16, 50 epochs.

Where the description is silent, the choices made here are marked "UNSPECIFIED" below.

The baseline runs at its best on a CPU: convolutions in channels-last memory layout and Adam's
fused kernel. Neither changes the arithmetic (same layers, same update rule); together they made
a training step 1.7x faster on 2 cores (9.6 -> 16.3 samples/s at batch 16), most of it in the
convolutions' backward pass and in Adam's per-tensor loop over 80M weights.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger("benchmarks.research")

RESEARCH_SAMPLE_RATE = 22050
RESEARCH_CLIP_SECONDS = 29.0
RESEARCH_N_MELS = 64
RESEARCH_FRAMES = 1200
# librosa centres its frames: 1 + n_samples // hop frames. 29 s * 22050 Hz = 639,450 samples and
# 639,450 // 533 = 1199, so hop 533 gives exactly 1200 frames (hop 532 would give 1202).
RESEARCH_HOP = 533
RESEARCH_VOCAB = 100
RESEARCH_LATENT = 32
RESEARCH_LYRICS_WEIGHT = 50.0
RESEARCH_BETA = 1.0
RESEARCH_LR = 1e-3
RESEARCH_BATCH_SIZE = 16
RESEARCH_EPOCHS = 50

# 64 x 1200 halved four times: 4 x 75, with 256 channels.
CONV_CHANNELS = (1, 32, 64, 128, 256)
FEATURE_MAP = (256, RESEARCH_N_MELS // 16, RESEARCH_FRAMES // 16)
FLAT_DIM = FEATURE_MAP[0] * FEATURE_MAP[1] * FEATURE_MAP[2]  # 76,800
AUDIO_HIDDEN = 512
LYRICS_HIDDEN = 128

assert 1 + int(RESEARCH_SAMPLE_RATE * RESEARCH_CLIP_SECONDS) // RESEARCH_HOP == RESEARCH_FRAMES
assert FLAT_DIM == 76_800


# --------------------------------------------------------------------------------------- features


def research_clip(path: str | Path) -> np.ndarray:
    """One file -> [64, 1200] float32 in [0, 1], exactly as the research code computed it."""
    import librosa  # the `bench` extra: only the baseline needs it

    y, sr = librosa.load(path, sr=RESEARCH_SAMPLE_RATE, duration=RESEARCH_CLIP_SECONDS)
    mel = librosa.feature.melspectrogram(
        y=y, sr=sr, n_mels=RESEARCH_N_MELS, hop_length=RESEARCH_HOP
    )
    db = librosa.power_to_db(mel, ref=np.max)
    lo, hi = float(db.min()), float(db.max())
    # UNSPECIFIED: a constant image (digital silence) has no range; it maps to zeros.
    scaled = (db - lo) / (hi - lo) if hi > lo else np.zeros_like(db)
    # A clip shorter than 29 s has fewer frames: pad on the right with 0 (the clip's own minimum
    # after scaling, i.e. silence); a longer one cannot occur (duration=29) but is cropped anyway.
    frames = scaled.shape[1]
    if frames < RESEARCH_FRAMES:
        scaled = np.pad(scaled, ((0, 0), (0, RESEARCH_FRAMES - frames)))
    return np.ascontiguousarray(scaled[:, :RESEARCH_FRAMES], dtype=np.float32)


def research_features(paths: Sequence[str | Path]) -> np.ndarray:
    """[N, 64, 1200] float32 in [0, 1]: one file at a time, as the research code did."""
    out = np.empty((len(paths), RESEARCH_N_MELS, RESEARCH_FRAMES), dtype=np.float32)
    for i, path in enumerate(paths):
        out[i] = research_clip(path)
    return out


def research_lyrics(texts: Sequence[str]) -> np.ndarray:
    """[N, <=100] float32 TF-IDF with scikit-learn's defaults and 100 terms, as in the research."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not any((t or "").strip() for t in texts):
        # An audio-only set: the research model had no lyrics-free path, so it gets zero rows.
        return np.zeros((len(texts), RESEARCH_VOCAB), dtype=np.float32)
    matrix = TfidfVectorizer(max_features=RESEARCH_VOCAB).fit_transform([t or "" for t in texts])
    return np.asarray(matrix.toarray(), dtype=np.float32)


# ------------------------------------------------------------------------------------------ model


class ResearchOutput(NamedTuple):
    audio_recon: torch.Tensor  # [B, 1, 64, 1200] in [0, 1]
    lyrics_recon: torch.Tensor  # [B, 100]
    mu: torch.Tensor  # [B, 32]
    logvar: torch.Tensor  # [B, 32]


def _convs(channels: Sequence[int], transpose: bool) -> nn.Sequential:
    conv = nn.ConvTranspose2d if transpose else nn.Conv2d
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
        layers.append(conv(c_in, c_out, kernel_size=4, stride=2, padding=1))
        if not (transpose and i == len(channels) - 2):  # the decoder's last layer: sigmoid instead
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ResearchVAE(nn.Module):
    """The research model, layer for layer (see the module docstring)."""

    def __init__(self, vocab_size: int = RESEARCH_VOCAB, latent_dim: int = RESEARCH_LATENT):
        super().__init__()
        self.latent_dim = latent_dim
        # Encoder.
        self.audio_convs = _convs(CONV_CHANNELS, transpose=False)
        self.audio_fc = nn.Linear(FLAT_DIM, AUDIO_HIDDEN)  # 76,800 x 512: ~39.3M weights
        self.lyrics_fc = nn.Linear(vocab_size, LYRICS_HIDDEN)
        self.fc_mu = nn.Linear(AUDIO_HIDDEN + LYRICS_HIDDEN, latent_dim)
        self.fc_logvar = nn.Linear(AUDIO_HIDDEN + LYRICS_HIDDEN, latent_dim)
        # Decoder, mirrored.
        self.decode_fc = nn.Linear(latent_dim, AUDIO_HIDDEN + LYRICS_HIDDEN)
        self.audio_defc = nn.Linear(AUDIO_HIDDEN, FLAT_DIM)  # 512 x 76,800: ~39.4M weights
        self.audio_deconvs = _convs(CONV_CHANNELS[::-1], transpose=True)
        self.lyrics_out = nn.Linear(LYRICS_HIDDEN, vocab_size)
        self.to(memory_format=torch.channels_last)

    @property
    def n_params(self) -> int:
        return count_params(self)

    def encode(
        self, audio: torch.Tensor, lyrics: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = audio.reshape(len(audio), 1, RESEARCH_N_MELS, RESEARCH_FRAMES)
        x = x.contiguous(memory_format=torch.channels_last)
        # UNSPECIFIED: the description names no activation after the two branch Linears; ReLU,
        # as in the convolutions, so the concatenated 640 features are a hidden layer.
        a = F.relu(self.audio_fc(self.audio_convs(x).flatten(1)))
        t = F.relu(self.lyrics_fc(lyrics))
        h = torch.cat([a, t], dim=1)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.decode_fc(z))
        a, t = h.split([AUDIO_HIDDEN, LYRICS_HIDDEN], dim=1)
        a = F.relu(self.audio_defc(a)).view(-1, *FEATURE_MAP)
        audio = torch.sigmoid(self.audio_deconvs(a))  # [B, 1, 64, 1200]
        return audio, self.lyrics_out(t)

    def forward(self, audio: torch.Tensor, lyrics: torch.Tensor) -> ResearchOutput:
        mu, logvar = self.encode(audio, lyrics)
        # Reparameterisation; the research code samples in training and uses the mean otherwise.
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        audio_recon, lyrics_recon = self.decode(z)
        return ResearchOutput(audio_recon, lyrics_recon, mu, logvar)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def research_loss(
    out: ResearchOutput,
    audio: torch.Tensor,
    lyrics: torch.Tensor,
    lyrics_weight: float = RESEARCH_LYRICS_WEIGHT,
    beta: float = RESEARCH_BETA,
) -> dict[str, torch.Tensor]:
    """MSE(audio) + 50 * MSE(lyrics) + beta * KL, with beta = 1.

    Reductions (the description only says "MSE(audio) + 50·MSE(lyrics) + KL"): each MSE is the
    mean over ALL elements of the batch (``F.mse_loss(reduction="mean")``, the framework default);
    the KL is summed over the 32 latent dimensions and averaged over the batch. So one nat of KL
    weighs as much as a mean squared pixel error of 1.0 over the whole image, which is a strong
    bottleneck; that is the research objective, reproduced, not endorsed.
    """
    target = audio.reshape_as(out.audio_recon)
    audio_mse = F.mse_loss(out.audio_recon, target)
    lyrics_mse = F.mse_loss(out.lyrics_recon, lyrics)
    kl = 0.5 * (out.mu.pow(2) + out.logvar.exp() - 1.0 - out.logvar).sum(dim=1).mean()
    total = audio_mse + lyrics_weight * lyrics_mse + beta * kl
    return {"total": total, "audio": audio_mse, "lyrics": lyrics_mse, "kl": kl}


# --------------------------------------------------------------------------------------- training


def research_optimizer(model: ResearchVAE, lr: float = RESEARCH_LR) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True)


def research_step(
    model: ResearchVAE,
    opt: torch.optim.Optimizer,
    audio: torch.Tensor,
    lyrics: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """One optimisation step on one batch; returns the detached loss parts."""
    model.train()
    parts = research_loss(model(audio, lyrics), audio, lyrics)
    opt.zero_grad(set_to_none=True)
    parts["total"].backward()
    opt.step()
    return {k: v.detach() for k, v in parts.items()}


def research_batch(
    audio: np.ndarray, lyrics: np.ndarray, idx: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows `idx` of the host arrays as float32 CPU tensors, audio shaped [B, 1, 64, 1200]."""
    a = torch.from_numpy(np.asarray(audio[idx], dtype=np.float32)).unsqueeze(1)
    t = torch.from_numpy(np.asarray(lyrics[idx], dtype=np.float32))
    return a, t


def train_research(
    audio: np.ndarray,
    lyrics: np.ndarray,
    epochs: int = RESEARCH_EPOCHS,
    seed: int = 0,
    batch_size: int = RESEARCH_BATCH_SIZE,
    on_epoch: Callable[[int, dict], None] | None = None,
) -> tuple[ResearchVAE, list[dict]]:
    """Train the research model on the CPU: audio [N, 64, 1200] in [0, 1], lyrics [N, 100].

    Seeded (torch and the shuffling RNG), shuffled mini-batches, no validation split and no early
    stopping (the description has none). Returns the model (in eval mode) and one record per epoch.
    """
    if audio.ndim != 3 or audio.shape[1:] != (RESEARCH_N_MELS, RESEARCH_FRAMES):
        raise ValueError(f"audio must be [N, 64, 1200], got {audio.shape}")
    if lyrics.ndim != 2 or len(lyrics) != len(audio):
        raise ValueError(f"lyrics must be [N, V] with N = {len(audio)}, got {lyrics.shape}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = ResearchVAE(vocab_size=lyrics.shape[1])
    opt = research_optimizer(model)
    n = len(audio)
    log.info(
        "research VAE: %d rows, batch %d, %d epochs, %.1fM parameters",
        n,
        batch_size,
        epochs,
        model.n_params / 1e6,
    )
    history: list[dict] = []
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n)
        sums = dict.fromkeys(("total", "audio", "lyrics", "kl"), 0.0)
        started = time.perf_counter()
        for start in range(0, n, batch_size):
            idx = np.sort(order[start : start + batch_size])
            parts = research_step(model, opt, *research_batch(audio, lyrics, idx))
            for k in sums:
                sums[k] += float(parts[k]) * len(idx)
        seconds = time.perf_counter() - started
        record = {"epoch": epoch, **{k: v / n for k, v in sums.items()}}
        record["loss"] = record.pop("total")
        record["samples_per_s"] = n / seconds
        record["seconds"] = seconds
        history.append(record)
        log.info(
            "research epoch %d/%d  loss %.5g (audio %.5g lyrics %.5g kl %.3f)  "
            "%.1f samples/s  %.1fs",
            epoch,
            epochs,
            record["loss"],
            record["audio"],
            record["lyrics"],
            record["kl"],
            record["samples_per_s"],
            seconds,
        )
        if on_epoch is not None:
            on_epoch(epoch, record)
    model.eval()
    return model, history


@torch.inference_mode()
def embed_research(
    model: ResearchVAE, audio: np.ndarray, lyrics: np.ndarray, batch_size: int = 64
) -> np.ndarray:
    """Posterior means [N, 32] float32."""
    model.eval()
    out = [np.zeros((0, model.latent_dim), dtype=np.float32)]
    for start in range(0, len(audio), batch_size):
        idx = np.arange(start, min(start + batch_size, len(audio)))
        mu, _ = model.encode(*research_batch(audio, lyrics, idx))
        out.append(mu.numpy())
    return np.concatenate(out).astype(np.float32)
