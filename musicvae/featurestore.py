"""Log-mel features cached in object storage, keyed by audio content hash + feature config.

A retrain or recluster computes features only for audio it has not seen under this config.
"""

from __future__ import annotations

import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from musicvae.features import MelConfig, mel_from_bytes
from musicvae.storage import ObjectStore

log = logging.getLogger("musicvae.featurestore")


def mel_key(cfg: MelConfig, audio_sha256: str) -> str:
    return f"features/mel/{cfg.key()}/{audio_sha256[:2]}/{audio_sha256}.npy"


def _to_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def ensure_mels(store: ObjectStore, audio: list[tuple[str, str]], cfg: MelConfig) -> int:
    """Compute and cache the mel of every (audio_key, sha256) not cached yet; returns how many."""
    cached = {
        k.rsplit("/", 1)[-1].removesuffix(".npy")
        for k in store.list_keys(f"features/mel/{cfg.key()}/")
    }
    todo = sorted({(key, sha) for key, sha in audio if sha not in cached}, key=lambda t: t[1])
    if not todo:
        return 0
    started = time.monotonic()

    def compute(item: tuple[str, str]) -> None:
        key, sha = item
        store.put_bytes(mel_key(cfg, sha), _to_bytes(mel_from_bytes(store.get_bytes(key), cfg)))

    with ThreadPoolExecutor(max_workers=2) as pool:
        for i, _ in enumerate(pool.map(compute, todo), 1):
            if i % 50 == 0 or i == len(todo):
                log.info(
                    "features: %d/%d mels computed (%.1f clips/s)",
                    i,
                    len(todo),
                    i / (time.monotonic() - started),
                )
    return len(todo)


def load_mels(store: ObjectStore, shas: list[str | None], cfg: MelConfig) -> np.ndarray:
    """[N, n_mels, n_frames] float16; rows without audio (sha None) are zeros."""
    out = np.zeros((len(shas), cfg.n_mels, cfg.n_frames), dtype=np.float16)

    def load(i: int) -> None:
        if shas[i]:
            out[i] = np.load(io.BytesIO(store.get_bytes(mel_key(cfg, shas[i]))))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(load, range(len(shas))))
    return out
