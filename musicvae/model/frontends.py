"""Audio front ends: what the beta-VAE's audio expert hears of a clip.

- `musicnn` (the default): musicnn's network pretrained on the Million Song Dataset
  (`musicvae.model.musicnn`), frozen. It hears every 3 s patch of the whole clip; the VAE's audio
  expert reads each patch's time-pooled mid-end activations and pools the patches itself.
- `mel`: the clip's log-mel image, cropped to 29 s, which the VAE's own CNN learns from scratch.

A front end turns audio bytes into what the feature store caches per content hash (`from_bytes`
for one clip, `extract` for a list),
a cached array into what the model reads of it (`row`), and the rows of a list of tracks into
the model's input (`stack`). Its `key()` names
every setting its output depends on, so features of different settings never mix.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch
import torchaudio

from musicvae.core.errors import ConfigurationError
from musicvae.model.features import (
    MelConfig,
    decode_audio,
    extract_mels,
    mel_from_bytes,
    one_thread_per_clip,
)
from musicvae.model.musicnn import LAYERS, MusicnnConfig, layer, patch_features

T = TypeVar("T")
NAMES = ("musicnn", "mel")
DEFAULT = "musicnn"
# Training epochs when a retrain does not say. The patch experts' MLPs are cheap per step and
# need more of them: on the dev real-audio set 20 epochs gave KMeans NMI 0.19, 100 gave 0.21.
# The mel CNN (60 samples/s on 2 cores) keeps the retrain default it had.
EPOCHS = {"musicnn": 100, "mel": 20}


class MelFrontend:
    """Log-mel images [n_mels, n_frames] of the clip's centre (`musicvae.model.features`)."""

    name = "mel"
    patches = False

    def __init__(self, config: MelConfig | None = None):
        self.config = config or MelConfig()

    def key(self) -> str:
        return f"mel/{self.config.key()}"

    def to_dict(self) -> dict:
        return {"name": self.name, **self.config.to_dict()}

    def from_bytes(self, data: bytes, device: torch.device) -> np.ndarray:
        return mel_from_bytes(data, self.config, device)

    def extract(
        self, load: Callable[[T], bytes], items: Sequence[T], device: torch.device, workers: int
    ) -> list[np.ndarray]:
        mels = extract_mels(load, items, self.config, device, workers)
        return list(mels.astype(np.float16))

    def row(self, cached: np.ndarray) -> np.ndarray:
        return cached

    def stack(self, rows: list[np.ndarray | None]) -> np.ndarray:
        """[N, n_mels, n_frames] float16 from `row`s; tracks without audio (None) are zeros.
        Consumes `rows` (see `release_into`)."""
        out = np.zeros((len(rows), self.config.n_mels, self.config.n_frames), np.float16)
        return release_into(out, rows)


class MusicnnFrontend:
    """Every 3 s patch's musicnn features (all of `musicnn.LAYERS`, [P, FEATURE_DIM]) are
    cached; the VAE reads one layer of each patch, and its audio expert pools the patches.

    `mean_pool` (the mid end's activations averaged over the patch's frames, 753 values) is the
    default: on the dev real-audio set its pooled features cluster best of the four layers
    (KMeans NMI 0.24 against 0.20-0.23 for max_pool and penultimate and 0.17 for the tags).
    """

    name = "musicnn"
    patches = True
    # A full-length song has ~80 patches; past this many, evenly spaced ones are kept, so one
    # long recording cannot blow up a training batch. MERGE's 30 s clips have 10.
    max_patches = 64

    def __init__(self, config: MusicnnConfig | None = None, layer: str = "mean_pool"):
        if layer not in LAYERS:
            raise ConfigurationError(f"unknown musicnn layer {layer!r}: one of {list(LAYERS)}")
        self.config = config or MusicnnConfig()
        self.layer = layer

    def key(self) -> str:
        return f"musicnn/{self.config.key()}"  # the cache holds every layer

    def to_dict(self) -> dict:
        return {**self.config.to_dict(), "name": self.name, "layer": self.layer}

    def from_bytes(self, data: bytes, device: torch.device) -> np.ndarray:
        """One clip's [P, FEATURE_DIM] float16: decode, resample to 16 kHz, every patch."""
        samples, sr = decode_audio(data)
        rate = self.config.sample_rate
        if sr != rate:
            samples = torchaudio.functional.resample(torch.from_numpy(samples), sr, rate).numpy()
        return patch_features(samples, self.config, device).astype(np.float16)

    def extract(
        self, load: Callable[[T], bytes], items: Sequence[T], device: torch.device, workers: int
    ) -> list[np.ndarray]:
        """Each worker thread takes one clip through fetch and `from_bytes`; on the CPU torch runs
        on one thread per clip (as `extract_mels` does, for the same reason)."""
        with one_thread_per_clip(device), ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda item: self.from_bytes(load(item), device), items))

    def stack(self, rows: list[np.ndarray | None]) -> np.ndarray:
        """[N, P, D] float16 from `row`s, zero-padded to the longest track's P; tracks without
        audio (None) are all zeros. Consumes `rows` (see `release_into`)."""
        longest = max((len(r) for r in rows if r is not None), default=1)
        return release_into(np.zeros((len(rows), longest, LAYERS[self.layer]), np.float16), rows)

    def row(self, cached: np.ndarray) -> np.ndarray:
        """A track's cached patches -> `layer` of each (at most `max_patches` of them): what the
        model reads, a third of what is cached, so it is all that loading keeps."""
        if len(cached) > self.max_patches:
            cached = cached[np.linspace(0, len(cached) - 1, self.max_patches).round().astype(int)]
        return layer(cached, self.layer)


def release_into(out: np.ndarray, rows: list[np.ndarray | None]) -> np.ndarray:
    """Copy each row into the start of `out[i]`, dropping the list's reference as it goes:
    `out` is zeros that the OS commits page by page, so the peak stays near one copy of the
    catalogue's features instead of two."""
    for i, r in enumerate(rows):
        if r is not None:
            out[i, : len(r)] = r
            rows[i] = None
    return out


Frontend = MelFrontend | MusicnnFrontend


def frontend(name: str = DEFAULT) -> Frontend:
    """The front end a retrain's `audio_frontend` parameter names, at its default settings."""
    if name == "musicnn":
        return MusicnnFrontend()
    if name == "mel":
        return MelFrontend()
    raise ConfigurationError(f"unknown audio_frontend {name!r}: choose one of {list(NAMES)}")


def from_dict(values: dict) -> Frontend:
    """The front end a saved model's config describes (`to_dict`). Models saved before front
    ends existed stored only their MelConfig, which has no `name`."""
    values = dict(values)
    name = values.pop("name", "mel")
    values.pop("frontend", None)
    if name == "mel":
        return MelFrontend(MelConfig(**values))
    layer_name = values.pop("layer")
    return MusicnnFrontend(MusicnnConfig(**values), layer_name)


def pooled(patches: np.ndarray) -> np.ndarray:
    """[N, P, D] zero-padded patch features -> [N, 2 D]: each track's mean and std over the
    patches it has, the frozen front end's own track representation (a baseline)."""
    x = patches.astype(np.float32)
    present = np.any(x != 0, axis=2, keepdims=True)
    count = np.maximum(present.sum(axis=1), 1)
    mean = x.sum(axis=1) / count
    var = (np.where(present, x - mean[:, None], 0.0) ** 2).sum(axis=1) / count
    return np.hstack([mean, np.sqrt(var)])
