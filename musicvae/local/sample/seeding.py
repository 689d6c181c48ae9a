"""The seeded random streams every part of the sample is drawn from: one per (seed, track index,
purpose), or per (seed, genre name, purpose), so output never depends on the order of work."""

from __future__ import annotations

import hashlib

import numpy as np

STREAM_PLAN, STREAM_META, STREAM_AUDIO, STREAM_LYRICS, STREAM_DEFECT = range(5)


def rng(seed: int, *keys: int) -> np.random.Generator:
    # SeedSequence needs non-negative words; folding keeps any Python int a valid seed.
    return np.random.default_rng([seed % 2**63, *keys])


def name_rng(seed: int, name: str, purpose: str) -> np.random.Generator:
    # hashlib, not hash(): Python salts str hashes per process, which would break determinism.
    digest = hashlib.sha256(f"{seed}\x00{purpose}\x00{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))
