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
from musicvae.model.features import one_thread_per_clip
from musicvae.model.frontends import Frontend

log = logging.getLogger("musicvae.model.featurestore")


def feature_key(frontend: Frontend, audio_sha256: str) -> str:
    return f"features/{frontend.key()}/{audio_sha256[:2]}/{audio_sha256}.npy"


def _to_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


# Clips in flight per task: threads beyond the cores cover each clip's two S3 round trips.
THREADS = 4
# A progress line per this many clips; each window's last clips are waited for (a few ms).
LOG_EVERY = 512


def ensure_features(store: ObjectStore, audio: list[tuple[str, str]], frontend: Frontend) -> int:
    """Compute and cache the features of every (audio_key, sha256) not cached yet; returns how
    many were computed. Each thread takes one clip through fetch, the front end and upload, so
    no clip waits for a batch: the cores stay busy while other clips are on the network."""
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

    def compute(item: tuple[str, str]) -> None:
        key, sha = item
        array = frontend.from_bytes(store.get_bytes(key), device)
        store.put_bytes(feature_key(frontend, sha), _to_bytes(array))

    started = time.monotonic()
    with one_thread_per_clip(device), ThreadPoolExecutor(max_workers=THREADS) as pool:
        for start in range(0, len(todo), LOG_EVERY):
            done = start + len(list(pool.map(compute, todo[start : start + LOG_EVERY])))
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
