"""Model inputs of snapshot tracks: their cached front-end features and their lyrics as TF-IDF."""

from __future__ import annotations

import numpy as np

from musicvae.core.lyrics import decode_lyrics
from musicvae.core.storage import ObjectStore
from musicvae.model import frontends
from musicvae.model.features import LyricsVectorizer
from musicvae.model.featurestore import load_features


def lyrics_texts(store: ObjectStore, tracks: list[dict]) -> list[str]:
    return [
        decode_lyrics(store.get_bytes(t["lyrics_key"])).text if t["lyrics_key"] else ""
        for t in tracks
    ]


def training_data(
    store: ObjectStore,
    tracks: list[dict],
    frontend: frontends.Frontend,
    vectorizer: LyricsVectorizer,
):
    from musicvae.model.trained import TrainingData

    lyrics = vectorizer.transform(lyrics_texts(store, tracks))
    shas = [t["audio_sha256"] if t["audio_key"] else None for t in tracks]
    return TrainingData(
        audio=load_features(store, shas, frontend),
        has_audio=np.array([sha is not None for sha in shas]),
        lyrics=lyrics,
        # Lyrics made only of words outside the vocabulary carry no signal: treat as missing.
        has_lyrics=lyrics.any(axis=1),
        patches=frontend.patches,
    )
