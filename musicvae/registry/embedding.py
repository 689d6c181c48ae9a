"""Embedding tracks with a registered model: cached features in, posterior means out."""

from __future__ import annotations

import numpy as np

from musicvae.core import lineage
from musicvae.core.config import Settings
from musicvae.core.storage import ObjectStore
from musicvae.model.featurestore import ensure_features
from musicvae.model.inputs import training_data
from musicvae.registry.versions import LoadedModel


def embed_tracks(store: ObjectStore, loaded: LoadedModel, tracks: list[dict]) -> np.ndarray:
    """[N, latent] embeddings of snapshot-shaped track dicts, computing missing features first."""
    audio = [(t["audio_key"], t["audio_sha256"]) for t in tracks if t["audio_key"]]
    ensure_features(store, audio, loaded.frontend)
    return loaded.model.embed(training_data(store, tracks, loaded.frontend, loaded.vectorizer))


def embedding_inputs(settings: Settings, loaded: LoadedModel) -> list[lineage.Dataset]:
    """What embedding reads, as lineage: the model's artifacts, its front end's features and the
    raw files (lyrics are vectorized from them)."""
    return [
        lineage.objects(settings, loaded.version.artifact_prefix),
        lineage.objects(settings, f"features/{loaded.frontend.key()}"),
        lineage.objects(settings, "raw"),
    ]
