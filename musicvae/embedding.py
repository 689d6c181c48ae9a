"""Embedding tracks with a registered model: cached features in, posterior means out."""

from __future__ import annotations

import numpy as np

from musicvae.featurestore import ensure_features
from musicvae.registry import LoadedModel
from musicvae.retrain import training_data
from musicvae.storage import ObjectStore


def embed_tracks(store: ObjectStore, loaded: LoadedModel, tracks: list[dict]) -> np.ndarray:
    """[N, latent] embeddings of snapshot-shaped track dicts, computing missing features first."""
    audio = [(t["audio_key"], t["audio_sha256"]) for t in tracks if t["audio_key"]]
    ensure_features(store, audio, loaded.frontend)
    return loaded.model.embed(training_data(store, tracks, loaded.frontend, loaded.vectorizer))
