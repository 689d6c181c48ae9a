"""Training loop for HybridVAE: seeded split, KL warm-up, modality dropout, early stopping, resume.

The data stays in host memory as numpy; each step moves one batch to the device. On a GPU the
forward pass runs under bfloat16 autocast; on a CPU it is float32 on every core. A checkpoint
handed to `on_epoch` resumes to exactly the weights an uninterrupted CPU run would reach.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from musicvae.model.cluster_tuning import tune_clusters
from musicvae.model.trained import (
    TrainConfig,
    TrainedModel,
    TrainingData,
    autocast,
    cpu_copy,
    device_batch,
    select_device,
)
from musicvae.model.vae import HybridVAE, band_statistics, vae_loss

log = logging.getLogger("musicvae.model.train")

# Validation loss must beat the best by this relative margin to count as progress, so that
# noise-level wiggles on a plateau do not keep resetting the patience counter.
MIN_RELATIVE_IMPROVEMENT = 1e-4


def _audio_stats(data: TrainingData, rows: np.ndarray):
    """Mean and std of the rows that have audio: over every log-mel value (floats), or per
    feature over the patches that exist (arrays), so that each feature weighs alike, as in PCA."""
    rows = rows[data.has_audio[rows]]
    if data.patches:
        return _patch_stats(data, rows)
    total = total_sq = count = 0.0
    for start in range(0, len(rows), 256):
        chunk = data.audio[rows[start : start + 256]].astype(np.float64)
        total += chunk.sum()
        total_sq += np.square(chunk).sum()
        count += chunk.size
    if count == 0:
        return 0.0, 1.0
    mean = total / count
    std = math.sqrt(max(total_sq / count - mean * mean, 0.0))
    return float(mean), float(std) if std > 1e-6 else 1.0


def _present_patches(data: TrainingData, rows: np.ndarray):
    """The patches that exist in `rows`, as float64 [n, D] chunks of 256 tracks: a catalogue's
    patch features need not fit in memory twice, nor in float64 at all."""
    for start in range(0, len(rows), 256):
        x = data.audio[rows[start : start + 256]].astype(np.float64)
        yield x.reshape(-1, x.shape[-1])[np.any(x != 0, axis=2).reshape(-1)]


def _patch_stats(data: TrainingData, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std over the patches that exist, in two passes (the mean first, so
    the variance sums squared deviations rather than differencing large sums)."""
    width = data.audio.shape[-1]
    total, count = np.zeros(width), 0
    for x in _present_patches(data, rows):
        total += x.sum(axis=0)
        count += len(x)
    if count == 0:
        return np.zeros(width, np.float32), np.ones(width, np.float32)
    mean = total / count
    squares = sum((np.square(x - mean).sum(axis=0) for x in _present_patches(data, rows)), 0.0)
    std = np.sqrt(squares / count)
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def _split(n: int, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if n < 2:
        raise ValueError(f"need at least 2 rows to split into train and validation, got {n}")
    order = rng.permutation(n)
    n_val = min(max(int(round(n * val_fraction)), 1), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def split_rows(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (train, validation) rows `fit` uses for this seed: fit features on train rows only."""
    return _split(n, val_fraction, np.random.default_rng(seed))


def _drop_modalities(has_a: np.ndarray, has_l: np.ndarray, p: float, rng: np.random.Generator):
    """Hide one modality of some two-modality samples from the encoder (reconstruction still
    targets both), so each expert learns to place a track on its own."""
    both = has_a & has_l
    drop = both & (rng.random(len(has_a)) < p)
    drop_audio = rng.random(len(has_a)) < 0.5
    return has_a & ~(drop & drop_audio), has_l & ~(drop & ~drop_audio)


LOSS_PARTS = ("total", "audio", "bands", "lyrics", "kl")


def _weights(config: TrainConfig) -> tuple[float, float]:
    return config.lyrics_weight, config.bands_weight


@torch.no_grad()
def _fit_band_standardisation(model, data, rows, stats, device) -> None:
    """The band-statistics target is standardised per statistic, as PCA's input is, with the
    training rows' mean and std: no statistic dominates the error by its scale."""
    if model.bands_decoder is None:
        return
    rows = rows[data.has_audio[rows]]
    if len(rows) < 2:
        return
    bands = torch.cat(
        [
            band_statistics(device_batch(data, rows[start : start + 256], device, *stats)[0])
            for start in range(0, len(rows), 256)
        ]
    )
    model.band_mean.copy_(bands.mean(dim=0))
    model.band_std.copy_(bands.std(dim=0).clamp(min=1e-3))


def _beta_at(epoch: int, config: TrainConfig) -> float:
    """Linear KL warm-up from 0 at epoch 0 to config.beta at epoch kl_warmup_epochs."""
    if config.kl_warmup_epochs <= 0:
        return config.beta
    return config.beta * min(1.0, epoch / config.kl_warmup_epochs)


def _train_epoch(model, opt, data, rows, config, beta, stats, rng, device) -> dict:
    model.train()
    order = rows[rng.permutation(len(rows))]
    sums = dict.fromkeys(LOSS_PARTS, 0.0)
    for start in range(0, len(order), config.batch_size):
        # Sorted indices read the numpy arrays in memory order; the batch content stays random.
        idx = np.sort(order[start : start + config.batch_size])
        enc_a, enc_l = _drop_modalities(
            data.has_audio[idx], data.has_lyrics[idx], config.modality_dropout, rng
        )
        audio, lyrics, has_a, has_l = device_batch(data, idx, device, *stats)
        enc_a, enc_l = torch.from_numpy(enc_a).to(device), torch.from_numpy(enc_l).to(device)
        with autocast(device):
            out = model(audio, lyrics, enc_a, enc_l)
            parts = vae_loss(out, audio, lyrics, has_a, has_l, beta, *_weights(config))
        opt.zero_grad(set_to_none=True)
        parts["total"].backward()
        opt.step()
        for k in sums:  # device-side sums: no host sync per step
            sums[k] = sums[k] + parts[k].detach() * len(idx)
    return {k: float(v) / len(rows) for k, v in sums.items()}


@torch.no_grad()
def _evaluate(model, data, rows, config, stats, device) -> dict:
    """Validation loss at the FULL beta, so epochs compare fairly during the KL warm-up."""
    model.eval()
    sums = dict.fromkeys(LOSS_PARTS, 0.0)
    for start in range(0, len(rows), 128):
        idx = rows[start : start + 128]
        batch = device_batch(data, idx, device, *stats)
        with autocast(device):
            parts = vae_loss(model(*batch), *batch, config.beta, *_weights(config))
        for k in sums:
            sums[k] += parts[k].item() * len(idx)
    return {k: v / len(rows) for k, v in sums.items()}


@dataclass
class _Progress:
    """What early stopping and resuming need to know about the epochs so far."""

    epochs_done: int = 0
    history: list[dict] = field(default_factory=list)
    best_val_loss: float = math.inf
    best_state: dict | None = None  # a private CPU copy, replaced (never mutated) on improvement
    bad_epochs: int = 0
    stopped_early: bool = False

    def record(self, val_loss: float, model: HybridVAE, config: TrainConfig) -> None:
        self.epochs_done += 1
        improved = math.isinf(self.best_val_loss) or (
            val_loss < self.best_val_loss - MIN_RELATIVE_IMPROVEMENT * abs(self.best_val_loss)
        )
        if improved:
            self.best_val_loss, self.bad_epochs = val_loss, 0
            self.best_state = cpu_copy(model.state_dict())
        elif self.epochs_done > config.kl_warmup_epochs:
            # During warm-up the objective itself is still moving: that is not a stall.
            self.bad_epochs += 1
        self.stopped_early = self.bad_epochs >= config.patience and self.epochs_done < config.epochs


def _checkpoint(model, opt, rng, progress: _Progress, stats, config, device) -> dict:
    return {
        "epoch": progress.epochs_done,  # resuming starts with the next epoch
        "model": cpu_copy(model.state_dict()),
        "optimizer": cpu_copy(opt.state_dict()),
        "numpy_rng": copy.deepcopy(rng.bit_generator.state),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state() if device.type == "cuda" else None,
        "best_state": progress.best_state,
        "best_val_loss": progress.best_val_loss,
        "bad_epochs": progress.bad_epochs,
        "stopped_early": progress.stopped_early,
        "history": copy.deepcopy(progress.history),
        "audio_mean": stats[0],
        "audio_std": stats[1],
        "model_kwargs": dict(model.kwargs),
        "config": config.to_dict(),
    }


def _restore(checkpoint: dict, model, opt, rng, device) -> tuple[_Progress, tuple[float, float]]:
    model.load_state_dict(checkpoint["model"])
    opt.load_state_dict(checkpoint["optimizer"])
    rng.bit_generator.state = checkpoint["numpy_rng"]
    torch.set_rng_state(checkpoint["torch_rng"])
    if device.type == "cuda" and checkpoint.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(checkpoint["cuda_rng"])
    progress = _Progress(
        epochs_done=checkpoint["epoch"],
        history=copy.deepcopy(checkpoint["history"]),
        best_val_loss=checkpoint["best_val_loss"],
        best_state=cpu_copy(checkpoint["best_state"]),
        bad_epochs=checkpoint["bad_epochs"],
        stopped_early=checkpoint.get("stopped_early", False),
    )
    return progress, (checkpoint["audio_mean"], checkpoint["audio_std"])


def _describe(parts: dict) -> str:
    return (
        "{total:.5g} (audio {audio:.5g} bands {bands:.4g} lyrics {lyrics:.4f} kl {kl:.2f})"
    ).format(**parts)


def _audio_values_per_track(data: TrainingData) -> float:
    """How many values a track's audio error sums over: a log-mel image's, or D per patch times
    the average number of patches a track with audio has."""
    if not data.patches:
        return float(np.prod(data.audio.shape[1:]))
    tracks = np.flatnonzero(data.has_audio)
    patches = sum(len(x) for x in _present_patches(data, tracks))
    return float(data.audio.shape[-1] * max(patches / len(tracks) if len(tracks) else 1.0, 1.0))


def _build_model(data: TrainingData, config: TrainConfig) -> HybridVAE:
    vocab = data.lyrics.shape[1]
    if data.patches:
        return HybridVAE(
            n_mels=0,
            n_frames=0,
            vocab_size=vocab,
            latent_dim=config.latent_dim,
            audio_dim=data.audio.shape[-1],
            hidden=config.hidden,
        )
    _, n_mels, n_frames = data.audio.shape
    return HybridVAE(n_mels, n_frames, vocab, config.latent_dim, config.width)


def fit(
    data: TrainingData,
    config: TrainConfig,
    *,
    on_epoch: Callable[[int, dict], None] | None = None,
    resume: dict | None = None,
) -> TrainedModel:
    """Train a HybridVAE on `data`; `resume` is a checkpoint previously passed to `on_epoch`."""
    device = select_device()
    if config.lyrics_weight is None:
        config = replace(config, lyrics_weight=float(_audio_values_per_track(data)))
    if config.bands_weight is None:
        config = replace(config, bands_weight=data.audio.shape[-1] / 2)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    train_rows, val_rows = _split(len(data), config.val_fraction, rng)

    model = _build_model(data, config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    if resume is None:
        progress, stats = _Progress(), _audio_stats(data, train_rows)
    else:
        progress, stats = _restore(resume, model, opt, rng, device)
        log.info("resuming after epoch %d/%d", progress.epochs_done, config.epochs)
    _fit_band_standardisation(model, data, train_rows, stats, device)

    log.info(
        "training on %s: %d train / %d validation rows, %s, %.2fM parameters",
        device,
        len(train_rows),
        len(val_rows),
        model.kwargs,
        sum(p.numel() for p in model.parameters()) / 1e6,
    )
    while progress.epochs_done < config.epochs and not progress.stopped_early:
        epoch = progress.epochs_done
        beta = _beta_at(epoch, config)
        started = time.perf_counter()
        train = _train_epoch(model, opt, data, train_rows, config, beta, stats, rng, device)
        train_seconds = time.perf_counter() - started
        val = _evaluate(model, data, val_rows, config, stats, device)
        record = {
            "epoch": epoch + 1,
            "train_loss": train["total"],
            "val_loss": val["total"],
            "audio": val["audio"],
            "bands": val["bands"],
            "lyrics": val["lyrics"],
            "kl": val["kl"],
            "beta": beta,
            "samples_per_s": len(train_rows) / train_seconds,
            "seconds": time.perf_counter() - started,
        }
        progress.history.append(record)
        log.info(
            "epoch %d/%d  train %s  val %s  beta %.3f  %.0f samples/s  %.1fs",
            epoch + 1,
            config.epochs,
            _describe(train),
            _describe(val),
            beta,
            record["samples_per_s"],
            record["seconds"],
        )
        progress.record(val["total"], model, config)
        if on_epoch is not None:
            on_epoch(epoch + 1, _checkpoint(model, opt, rng, progress, stats, config, device))
        if progress.stopped_early:
            log.info("early stop: no validation improvement for %d epochs", progress.bad_epochs)

    if progress.best_state is not None:
        model.load_state_dict(progress.best_state)
    model.eval()
    trained = TrainedModel(
        model=model,
        config=config,
        audio_mean=stats[0],
        audio_std=stats[1],
        history=progress.history,
        best_val_loss=progress.best_val_loss,
        stopped_early=progress.stopped_early,
    )
    return tune_clusters(trained, data) if config.clusters else trained
