"""New batches for a landing zone that already holds a sample catalogue: more tracks from the
same generator (same genres and quadrants, new content, fresh ids), as they come or built to
differ from the rest."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from musicvae.local.sample import metadata
from musicvae.local.sample.audio import SAMPLE_RATE, encode_mp3, render_audio
from musicvae.local.sample.lyrics import render_lyrics

# How the batch built to differ differs: every clip 24 dB quieter and cut to 18 s (still valid).
QUIETER_DB = 24.0
CUT_SECONDS = 18.0
SHIFTED = {"duration_s", "rms_dbfs", "peak"}


def add_batch(
    subset: Path, tracks: int, seed: int, count: int, first_id: int, shifted: bool
) -> list[str]:
    """Append `count` tracks to the MERGE_Bimodal_Balanced folder `subset` that build_sample
    made with `tracks` and `seed`; their song ids are A<first_id>, A<first_id + 1>, ...
    Returns their track ids."""
    plan = metadata.plan(tracks, seed)
    rows = []
    for i in range(count):
        n = first_id + i
        # A template's genre and quadrant, and an index no sample row has: new content.
        row = replace(plan[i % tracks], index=n, audio_id=f"A{n}", lyric_id=f"L{n}")
        row = replace(row, allmusic_id=f"MT{9_000_000_000 + n}")
        clip = render_audio(row.label, row.quadrant, seed, n)
        if shifted:
            clip = clip[: int(CUT_SECONDS * SAMPLE_RATE)] * np.float32(10 ** (-QUIETER_DB / 20))
        (subset / "audio" / row.quadrant / f"A{n}.mp3").write_bytes(encode_mp3(clip))
        lyrics = render_lyrics(row.label, row.quadrant, seed, n)
        (subset / "lyrics" / row.quadrant / f"L{n}.txt").write_text(lyrics, encoding="utf-8")
        rows.append(metadata.metadata(row, seed))
    csv = next(subset.glob("*_metadata.csv"))
    current = pd.read_csv(csv, dtype=str, keep_default_na=False)
    pd.concat([current, pd.DataFrame(rows).astype(str)]).to_csv(csv, index=False)
    return [f"bimodal_balanced/A{first_id + i}" for i in range(count)]
