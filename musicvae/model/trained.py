"""What training consumes and produces: its settings (`TrainConfig`), its inputs
(`TrainingData`, in host memory as numpy), and the trained model (`TrainedModel`) that embeds
tracks and saves to and loads from a plain state dict.

On a GPU the forward pass runs under bfloat16 autocast; on a CPU it is float32 on every core.
"""

from __future__ import annotations

import copy
import math
import os
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch

from musicvae.model.vae import HybridVAE, patch_mask


@dataclass
class TrainConfig:
    epochs: int = 30
    beta: float = 1.0
    latent_dim: int = 32
    learning_rate: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    kl_warmup_epochs: int = 5
    val_fraction: float = 0.15
    patience: int = 6
    modality_dropout: float = 0.3
    # None: as many as there are audio values per track (log-mel values per clip, or features
    # per patch times patches per clip). The audio term sums squared errors over n_mels x
    # n_frames values of unit scale (~40k; patches: P x D), a TF-IDF row's over at most 1; weighted
    # so, each modality counts about as much per track. Measured on the 200-track demo sample
    # (genre NMI of KMeans on the means): 0.71 at 512, 0.76 at 4096, 0.78 at 32768.
    lyrics_weight: float | None = None
    # None: n_frames / 2. Each of the 2 x n_mels band statistics stands for the n_frames / 2
    # log-mel values it summarises, so the summary weighs as much as the image. Measured (3
    # epochs, 3 seeds, real-audio set, all windows): 0.116 at 1x this, 0.108 at 4x.
    bands_weight: float | None = None
    width: int = 32
    hidden: int = 256  # the MLP experts' width, for a pretrained front end's patch features
    # Cluster tuning (`musicvae.model.cluster_tuning`) towards this many clusters after the VAE
    # has trained; 0: none. Needs a pretrained front end's patch features. Weight and epochs
    # measured on the dev real-audio set (5 seeds, NMI): weight 300 0.24, 1000 0.27, 3000 0.27.
    clusters: int = 0
    cluster_weight: float = 1000.0
    cluster_epochs: int = 75

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class TrainingData:
    # [N, n_mels, n_frames] log-mel images or, with `patches`, [N, P, D] a pretrained front
    # end's features of every patch, zero-padded after a clip's last (float16/32); rows without
    # audio are zeros
    audio: np.ndarray
    has_audio: np.ndarray  # [N] bool
    lyrics: np.ndarray  # [N, V] float32 TF-IDF
    has_lyrics: np.ndarray  # [N] bool
    patches: bool = False

    def __post_init__(self):
        n = len(self.audio)
        if self.audio.ndim != 3 or self.lyrics.ndim != 2:
            raise ValueError("audio must be [N, n_mels, n_frames] or [N, P, D], lyrics [N, V]")
        if not len(self.has_audio) == len(self.lyrics) == len(self.has_lyrics) == n:
            raise ValueError("audio, has_audio, lyrics and has_lyrics must have the same rows")
        self.has_audio = np.asarray(self.has_audio, dtype=bool)
        self.has_lyrics = np.asarray(self.has_lyrics, dtype=bool)

    def __len__(self) -> int:
        return len(self.audio)


def select_device() -> torch.device:
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # input sizes are fixed, so tuning pays off
        return torch.device("cuda")
    torch.set_num_threads(os.cpu_count() or 1)
    return torch.device("cpu")


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def device_batch(data: TrainingData, idx: np.ndarray, device: torch.device, mean, std):
    """Rows `idx` as device tensors, audio normalised with the training statistics."""
    audio = torch.from_numpy(data.audio[idx]).to(device).float()
    present = patch_mask(audio)[..., None] if data.patches else None
    if np.ndim(mean):  # per-feature statistics of patch features
        mean, std = torch.as_tensor(mean, device=device), torch.as_tensor(std, device=device)
    audio = (audio - mean) / std
    if present is not None:
        audio = audio * present  # padding stays zeros, which is how the model knows it
    lyrics = torch.from_numpy(np.asarray(data.lyrics[idx], dtype=np.float32)).to(device)
    has_audio = torch.from_numpy(data.has_audio[idx]).to(device)
    has_lyrics = torch.from_numpy(data.has_lyrics[idx]).to(device)
    return audio, lyrics, has_audio, has_lyrics


def cpu_copy(obj):
    """Deep copy with every tensor on the CPU: checkpoints must not alias live training state."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


@dataclass
class TrainedModel:
    model: HybridVAE
    config: TrainConfig
    audio_mean: float | np.ndarray  # a float for log-mel images, per feature for patches
    audio_std: float | np.ndarray
    history: list[dict] = field(default_factory=list)
    best_val_loss: float = math.inf
    stopped_early: bool = False
    # Set only in models trained before embeddings became the raw posterior means: per latent
    # dimension, the training rows' mean and std of the posterior means, which those models'
    # embeddings are standardised with (a recluster of an old version gives the embeddings it
    # always gave). The KL term already leaves every active dimension near unit variance (1.0 to
    # 1.4 on real audio); the ones that spread tracks wider than the prior separate them best,
    # and standardising takes that emphasis away (real audio, 5 seeds: NMI 0.233 +- 0.007 as
    # they are, 0.213 +- 0.019 standardised; benchmarks/latent_geometry.py).
    latent_mean: np.ndarray | None = None
    latent_std: np.ndarray | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def embed(self, data: TrainingData, batch_size: int = 128) -> np.ndarray:
        """Posterior means [N, latent_dim] float32, standardised only for older models."""
        mu = self.posterior_means(data, batch_size=batch_size)
        if self.latent_mean is None:
            return mu
        return ((mu - self.latent_mean) / self.latent_std).astype(np.float32)

    def posterior_means(
        self, data: TrainingData, rows: np.ndarray | None = None, batch_size: int = 128
    ) -> np.ndarray:
        """Posterior means [N, latent_dim] float32 of `rows` (default all; rows with neither
        modality map to the prior's mean, zeros)."""
        self.model.eval()
        rows = np.arange(len(data)) if rows is None else np.asarray(rows)
        out = []
        with torch.inference_mode(), autocast(self.device):
            for start in range(0, len(rows), batch_size):
                idx = rows[start : start + batch_size]
                batch = device_batch(data, idx, self.device, self.audio_mean, self.audio_std)
                mu, _ = self.model.encode(*batch)
                out.append(mu.float().cpu().numpy())
        if not out:
            return np.zeros((0, self.config.latent_dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)

    def reconstruct(self, data: TrainingData, rows) -> np.ndarray:
        """Audio reconstructions of `rows`, on the scale of the input: log-mel images
        [k, n_mels, T], or for patch features the one [k, D] that every patch is compared with."""
        self.model.eval()
        rows = np.asarray(rows)
        with torch.inference_mode(), autocast(self.device):
            batch = device_batch(data, rows, self.device, self.audio_mean, self.audio_std)
            recon = self.model(*batch).audio_recon.float().cpu().numpy()
        shape = data.audio.shape[2:] if data.patches else data.audio.shape[1:]
        return recon.reshape(len(rows), *shape) * self.audio_std + self.audio_mean

    def state(self) -> dict:
        return {
            "model_kwargs": dict(self.model.kwargs),
            "state_dict": cpu_copy(self.model.state_dict()),
            "audio_mean": np.asarray(self.audio_mean).tolist(),
            "audio_std": np.asarray(self.audio_std).tolist(),
            "config": self.config.to_dict(),
            "history": copy.deepcopy(self.history),
            "best_val_loss": self.best_val_loss,
            "stopped_early": self.stopped_early,
            "latent_mean": None if self.latent_mean is None else self.latent_mean.tolist(),
            "latent_std": None if self.latent_std is None else self.latent_std.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict, device: torch.device | str | None = None) -> TrainedModel:
        """Rebuild a saved model; `device` defaults to `select_device()`."""
        device = select_device() if device is None else torch.device(device)
        # Models saved before the audio expert had band statistics carry no "band_stats" entry,
        # and those saved before the band-statistics decoder no "bands_head".
        model = HybridVAE(**{"band_stats": False, "bands_head": False, **state["model_kwargs"]})
        model.load_state_dict(state["state_dict"])
        return cls(
            model=model.to(device).eval(),
            config=TrainConfig.from_dict(state["config"]),
            audio_mean=_stat(state["audio_mean"]),
            audio_std=_stat(state["audio_std"]),
            history=list(state.get("history", [])),
            best_val_loss=float(state.get("best_val_loss", math.inf)),
            stopped_early=bool(state.get("stopped_early", False)),
            latent_mean=_array(state.get("latent_mean")),
            latent_std=_array(state.get("latent_std")),
        )


def _stat(value: float | list) -> float | np.ndarray:
    return float(value) if np.ndim(value) == 0 else np.asarray(value, dtype=np.float32)


def _array(values: list | None) -> np.ndarray | None:
    return None if values is None else np.asarray(values, dtype=np.float32)
