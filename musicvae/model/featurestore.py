"""Front-end features cached in object storage, keyed by audio content hash + front-end settings.

A retrain or recluster computes features only for audio it has not seen under those settings:
`features/<frontend.key()>/<sha[:2]>/<sha256 of the audio>.npy`.
"""

from __future__ import annotations

import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from musicvae.core.storage import ObjectStore
from musicvae.model.frontends import Frontend

log = logging.getLogger("musicvae.model.featurestore")


def feature_key(frontend: Frontend, audio_sha256: str) -> str:
    return f"features/{frontend.key()}/{audio_sha256[:2]}/{audio_sha256}.npy"


def _to_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def ensure_features(
    store: ObjectStore, audio: list[tuple[str, str]], frontend: Frontend, batch_size: int = 32
) -> int:
    """Compute and cache the features of every (audio_key, sha256) not cached yet; returns how
    many were computed. Fetch, decode and the front end run in threads, one file each."""
    shas = sorted({sha for _, sha in audio})
    # One request per clip, in threads: a listing of the cache instead would read every cached
    # clip of the catalogue in every shard.
    with ThreadPoolExecutor(max_workers=8) as pool:
        cached = pool.map(lambda sha: store.exists(feature_key(frontend, sha)), shas)
        missing = {sha for sha, hit in zip(shas, cached, strict=True) if not hit}
    todo = sorted({(key, sha) for key, sha in audio if sha in missing}, key=lambda t: t[1])
    if not todo:
        return 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    started = time.monotonic()

    with ThreadPoolExecutor(max_workers=4) as pool:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            # Threads beyond the cores cover the S3 round trips.
            arrays = frontend.extract(store.get_bytes, [key for key, _ in batch], device, 4)
            list(
                pool.map(
                    lambda pair: store.put_bytes(
                        feature_key(frontend, pair[0][1]), _to_bytes(pair[1])
                    ),
                    zip(batch, arrays, strict=True),
                )
            )
            done = start + len(batch)
            log.info(
                "features: %d/%d clips through the %s front end on %s (%.1f clips/s)",
                done,
                len(todo),
                frontend.name,
                device,
                done / (time.monotonic() - started),
            )
    return len(todo)


def load_features(store: ObjectStore, shas: list[str | None], frontend: Frontend) -> np.ndarray:
    """The model's audio input for these tracks (`frontend.stack`); tracks without audio (sha
    None) are zeros. Each cached array is cut to its `frontend.row` as it is loaded."""
    rows: list[np.ndarray | None] = [None] * len(shas)

    def load(i: int) -> None:
        if shas[i]:
            cached = np.load(io.BytesIO(store.get_bytes(feature_key(frontend, shas[i]))))
            rows[i] = frontend.row(cached)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(load, range(len(shas))))
    return frontend.stack(rows)
