"""Log-mel features cached in object storage, keyed by audio content hash + feature config.

A retrain or recluster computes features only for audio it has not seen under this config.
"""

from __future__ import annotations

import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from musicvae.features import MelConfig, extract_mels
from musicvae.storage import ObjectStore

log = logging.getLogger("musicvae.featurestore")


def mel_key(cfg: MelConfig, audio_sha256: str) -> str:
    return f"features/mel/{cfg.key()}/{audio_sha256[:2]}/{audio_sha256}.npy"


def _to_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def ensure_mels(
    store: ObjectStore, audio: list[tuple[str, str]], cfg: MelConfig, batch_size: int = 32
) -> int:
    """Compute and cache the mel of every (audio_key, sha256) not cached yet; returns how many.

    Fetch, decode and log-mel run in threads, one file each (`extract_mels`); on a GPU the
    log-mel runs on whole batches there instead.
    """
    cached = {
        k.rsplit("/", 1)[-1].removesuffix(".npy")
        for k in store.list_keys(f"features/mel/{cfg.key()}/")
    }
    todo = sorted({(key, sha) for key, sha in audio if sha not in cached}, key=lambda t: t[1])
    if not todo:
        return 0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.monotonic()

    with ThreadPoolExecutor(max_workers=4) as pool:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            # Threads beyond the cores cover the S3 round trips.
            mels = extract_mels(store.get_bytes, [key for key, _ in batch], cfg, device, workers=4)
            list(
                pool.map(
                    lambda pair: store.put_bytes(
                        mel_key(cfg, pair[0][1]), _to_bytes(pair[1].astype(np.float16))
                    ),
                    zip(batch, mels, strict=True),
                )
            )
            done = start + len(batch)
            log.info(
                "features: %d/%d mels computed on %s (%.1f clips/s)",
                done,
                len(todo),
                device,
                done / (time.monotonic() - started),
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
