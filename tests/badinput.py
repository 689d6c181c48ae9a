"""A MERGE-layout landing zone holding every kind of bad input the pipeline must survive, and
the exact outcome each one must get.

`build(root)` writes it and returns the cases: for each, where it shows (a track id, or an item of
ingest_rejections) and what must happen to it. Audio is kept as short as each case allows.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

BIMODAL = "MERGE_Bimodal_Balanced"
SUBSET = "bimodal_balanced"
GOOD_SECONDS = 16.0  # just above the 15 s minimum of data_quality.toml
SR = 22050


@dataclass(frozen=True)
class Case:
    name: str
    where: str  # a track id ('bimodal_balanced/A101'), or a rejected item
    outcome: str  # 'valid', 'quarantined', 'rejected' or 'ignored'
    reason: str | None = None  # the exact reason, or a prefix of it ending in '…'
    warning: str | None = None  # a track_issues warning check the track must carry


def tone(seconds: float, sr: int = SR, channels: int = 1, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * (220 + 40 * seed) * t) + 0.02 * rng.standard_normal(t.size)
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def encode(samples: np.ndarray, sr: int = SR, fmt: str = "MP3") -> bytes:
    buffer = io.BytesIO()
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype(np.int16)
    sf.write(buffer, pcm, sr, format=fmt)
    return buffer.getvalue()


GOOD = b"<a good file, distinct from every other>"
LYRICS = "Walking down the empty road tonight\nsinging softly to the fading light\n" * 3


class _Catalogue:
    def __init__(self, root: Path):
        self.folder = root / BIMODAL
        self.rows: list[dict] = []
        self.cases: list[Case] = []
        self.next = 100

    def row(self, quadrant: str = "Q1", **fields) -> tuple[str, str]:
        self.next += 1
        audio, lyric = f"A{self.next:03d}", f"L{self.next:03d}"
        self.rows.append(
            {
                "Audio_Song": audio,
                "Lyric_Song": lyric,
                "Quadrant": quadrant,
                "Artist": "Some Artist",
                "Title": f"Song {self.next}",
                "Genres": "Pop/Rock,Pop",
                **fields,
            }
        )
        return audio, lyric

    def file(self, rel: str, data: bytes) -> Path:
        path = self.folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def track(
        self,
        name: str,
        outcome: str,
        reason: str | None = None,
        audio: bytes | None = GOOD,
        lyrics: bytes | None = GOOD,
        quadrant: str = "Q1",
        warning: str | None = None,
        **fields,
    ) -> str:
        """A metadata row with its files (None: no such file); returns the track id."""
        audio_id, lyric_id = self.row(quadrant, **fields)
        # Distinct content per track: equal bytes under two ids is a case of its own.
        if audio is GOOD:
            audio = encode(tone(GOOD_SECONDS, seed=self.next))
        if lyrics is GOOD:
            lyrics = f"{LYRICS}track {self.next}\n".encode()
        folder = quadrant if quadrant in ("Q1", "Q2", "Q3", "Q4") else "Q1"
        if audio is not None:
            self.file(f"audio/{folder}/{audio_id}.mp3", audio)
        if lyrics is not None:
            self.file(f"lyrics/{folder}/{lyric_id}.txt", lyrics)
        track_id = f"{SUBSET}/{audio_id}"
        self.cases.append(Case(name, track_id, outcome, reason, warning))
        return track_id


def build(root: Path, good: int = 4) -> list[Case]:
    """Write the bad-input landing zone under root; return its cases (good tracks included).

    Files not given are good ones, distinct from every other file.
    """
    c = _Catalogue(root)
    for i in range(good):
        c.track(f"good {i}", "valid")

    truncated = encode(tone(GOOD_SECONDS, seed=50))
    twin = encode(tone(GOOD_SECONDS, seed=51))
    square = np.sign(np.sin(2 * np.pi * 110 * np.arange(int(GOOD_SECONDS * SR)) / SR))
    cases = [
        ("zero-byte audio", "quarantined", "audio file is empty (0 bytes)", {"audio": b""}),
        ("truncated MP3", "quarantined", "duration …", {"audio": truncated[: len(truncated) // 8]}),
        (
            "random bytes named .mp3",
            "quarantined",
            "audio cannot be decoded: …",
            {"audio": np.random.default_rng(1).bytes(40_000)},
        ),
        (
            "WAV named .mp3",
            "valid",
            None,
            {"audio": encode(tone(GOOD_SECONDS, seed=52), fmt="WAV"), "warning": "audio_format"},
        ),
        (
            "2 s clip",
            "quarantined",
            "duration 2.0 s outside [15, 90] s",
            {"audio": encode(tone(2.0))},
        ),
        (
            "10 min clip",
            "quarantined",
            "duration 600.0 s outside [15, 90] s",
            {"audio": encode(tone(600.0, sr=16000), sr=16000)},
        ),
        (
            "digital silence",
            "quarantined",
            "audio is digital silence",
            {"audio": encode(np.zeros((int(GOOD_SECONDS * SR), 1), np.float32))},
        ),
        (
            "full-scale clipping",
            "quarantined",
            "…% of samples clipped",
            {"audio": encode(square[:, None].astype(np.float32))},
        ),
        ("48 kHz stereo", "valid", None, {"audio": encode(tone(GOOD_SECONDS, 48000, 2), 48000)}),
        (
            "Latin-1 lyrics",
            "valid",
            None,
            {
                "lyrics": "Canción de amor, corazón\n".encode("latin-1") * 4,
                "warning": "lyrics_utf8",
            },
        ),
        (
            "lyrics with a BOM",
            "valid",
            None,
            {"lyrics": b"\xef\xbb\xbf" + LYRICS.encode() + b"bom", "warning": "lyrics_bom"},
        ),
        ("empty lyrics", "quarantined", "lyrics are empty (only whitespace)", {"lyrics": b" \n\n"}),
        (
            "2 MB of lyrics",
            "quarantined",
            "lyrics have …characters (> 20000)",
            {"lyrics": (LYRICS * 20_000)[: 2 * 1024 * 1024].encode()},
        ),
        ("missing lyrics", "quarantined", "lyrics file missing", {"lyrics": None}),
        ("missing audio", "quarantined", "audio file missing", {"audio": None}),
        (
            "invalid quadrant",
            "quarantined",
            "quadrant 'Q5' is not one of Q1..Q4",
            {"quadrant": "Q5"},
        ),
    ]
    for name, outcome, reason, kwargs in cases:
        c.track(name, outcome, reason, **kwargs)
    first = c.track("duplicate content: the first copy", "valid", audio=twin)
    c.track(
        "duplicate content: the later copy",
        "quarantined",
        f"same audio content as {first}",
        audio=twin,
    )

    mojibake = c.track("mojibake artist", "valid", Artist="SinÃ©ad OâConnor")
    c.rows.append(dict(c.rows[-1], Title="the same id again"))
    c.cases.append(
        Case(
            "duplicated metadata row",
            mojibake.split("/")[1],
            "rejected",
            "duplicate metadata row for this id",
        )
    )
    c.rows.append({**c.rows[0], "Audio_Song": "../../etc/passwd", "Lyric_Song": "L999"})
    c.cases.append(Case("path-traversal id", "../../etc/passwd", "rejected", "unsafe id …"))

    orphan = encode(tone(GOOD_SECONDS, seed=53))
    spaced = "audio/Q2/Canción de prueba ñ.mp3"
    c.file(spaced, orphan)
    c.cases.append(
        Case(
            "file name with spaces and non-ASCII letters",
            f"{BIMODAL}/{spaced}",
            "rejected",
            "no metadata row for id 'Canción de prueba ñ'",
        )
    )
    for where in (c.folder / "audio/Q1", c.folder, root):
        (where / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    c.cases.append(Case(".DS_Store stray files", f"{BIMODAL}/audio/Q1/.DS_Store", "ignored"))

    outside = root.parent / "outside-the-dataset.mp3"
    outside.write_bytes(encode(tone(GOOD_SECONDS, seed=54)))
    linked = c.track(
        "a row whose audio is a symlink", "quarantined", "audio file missing", audio=None
    )
    link = f"audio/Q1/{linked.split('/')[1]}.mp3"
    os.symlink(outside, c.folder / link)
    c.cases.append(
        Case(
            "symlink pointing outside the dataset",
            f"{BIMODAL}/{link}",
            "rejected",
            "symbolic link, not followed",
        )
    )

    pd.DataFrame(c.rows).to_csv(c.folder / "merge_bimodal_balanced_metadata.csv", index=False)
    return c.cases


def matches(reason: str | None, expected: str) -> bool:
    """`expected` with '…' stands for any text there."""
    parts = expected.split("…")
    if reason is None or not reason.startswith(parts[0]) or not reason.endswith(parts[-1]):
        return False
    return all(part in reason for part in parts)
