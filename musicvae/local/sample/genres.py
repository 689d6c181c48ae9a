"""The genres of the sample: MERGE's genre table, how many rows each label gets, and how labels
are related (a child leans on its parent; some top-level genres are siblings). Metadata, audio
and lyrics are all derived from a row's label through these tables."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from musicvae.ingest.merge import genre_label

# (first entry of the Genres field, rows at 2000 tracks, parent label). The top eight counts and
# the 12 empty rows are the real MERGE Bimodal Balanced figures; the tail is invented but keeps
# the real shape (61 more labels, 348 rows). A parent makes the child sound and read like it.
GENRE_TABLE: tuple[tuple[str, int, str | None], ...] = (
    ("Pop/Rock", 637, None),
    ("Country", 248, None),
    ("Electronic", 205, None),
    ("Rap", 150, None),
    ("Blues", 129, None),
    ("Jazz", 114, None),
    ("R&B", 98, None),
    ("Folk", 59, None),
    ("Reggae", 33, None),
    ("Latin", 28, None),
    ("Vocal", 22, "Pop"),
    ("Easy Listening", 19, "Pop"),
    ("International", 17, None),
    ("Stage & Screen", 15, None),
    ("Religious", 14, None),
    ("New Age", 12, None),
    ("Classical", 11, None),
    ("Avant-Garde", 10, None),
    ("Comedy/Spoken", 9, None),
    ("Alternative/Indie Rock", 9, "Pop"),
    ("Soul", 8, "R&B"),
    ("Hard Rock", 8, "Pop"),
    ("Children's", 7, None),
    ("Holiday", 7, None),
    ("Punk/New Wave", 6, "Pop"),
    ("Hip-Hop/Urban", 6, "Rap"),
    ("Club/Dance", 6, "Electronic"),
    ("Singer/Songwriter", 5, "Folk"),
    ("Gospel", 5, "Religious"),
    ("Funk", 5, "R&B"),
    ("Heavy Metal", 5, "Pop"),
    ("Americana", 4, "Country"),
    ("Bluegrass", 4, "Country"),
    ("Celtic/British Isles", 4, "Folk"),
    ("Tropical", 4, "Latin"),
    ("Ambient", 4, "Electronic"),
    ("Contemporary Christian", 3, "Religious"),
    ("Lounge", 3, "Jazz"),
    ("Disco", 3, "R&B"),
    ("House", 3, "Electronic"),
    ("Soft Rock", 3, "Pop"),
    ("Swing", 3, "Jazz"),
    ("Trip-Hop", 3, "Electronic"),
    ("Soundtracks", 3, "Stage & Screen"),
    ("Brazilian Pop", 2, "Latin"),
    ("Caribbean", 2, "Reggae"),
    ("African", 2, "International"),
    ("Europop", 2, "Pop"),
    ("Downtempo", 2, "Electronic"),
    ("Techno", 2, "Electronic"),
    ("Industrial", 2, "Electronic"),
    ("Big Band", 2, "Jazz"),
    ("Show Tunes", 2, "Stage & Screen"),
    ("Cabaret", 2, "Vocal"),
    ("Experimental", 2, "Avant-Garde"),
    ("Adult Contemporary", 2, "Pop"),
    ("Bebop", 1, "Jazz"),
    ("Exotica", 1, "Jazz"),
    ("Trance", 1, "Electronic"),
    ("Dubstep", 1, "Electronic"),
    ("Spoken Word", 1, "Comedy"),
    ("Film Score", 1, "Stage & Screen"),
    ("Worship", 1, "Religious"),
    ("Alternative Country", 1, "Country"),
    ("Traditional Folk", 1, "Folk"),
    ("Latin Pop", 1, "Latin"),
    ("Asian Pop", 1, "International"),
    ("Noise", 1, "Avant-Garde"),
    ("Drum'n'Bass", 1, "Electronic"),
)
EMPTY_GENRE_ROWS = 12
REFERENCE_TRACKS = 2000
TOP_GENRES = 8
# Below this size one empty-Genres row would take too large a share of the sample.
_MIN_TRACKS_FOR_EMPTY = 20

# Related top-level genres: they share some lyric vocabulary so text alone cannot split them.
SIBLINGS = {
    "Country": "Folk",
    "Folk": "Country",
    "Rap": "R&B",
    "R&B": "Rap",
    "Blues": "Jazz",
    "Jazz": "Blues",
}


PRIMARY = {genre_label(name): name for name, _, _ in GENRE_TABLE}
PARENT = {genre_label(name): parent for name, _, parent in GENRE_TABLE}


def genre_counts(tracks: int) -> dict[str | None, int]:
    """Rows per genre label (None = empty Genres) for a sample of `tracks` rows.

    The real 2000-track distribution scaled by largest remainder, so ``genre_counts(2000)`` is
    the reference itself. Small samples are then nudged so the top genres (and, from 20 rows,
    one empty-Genres row) still appear: tests and checks rely on those being present.
    """
    if tracks < 1:
        raise ValueError(f"tracks must be at least 1, got {tracks}")
    base = [(genre_label(name), count) for name, count, _ in GENRE_TABLE]
    base.append((None, EMPTY_GENRE_ROWS))
    counts = _largest_remainder([count for _, count in base], tracks)
    must_have = list(range(min(TOP_GENRES, tracks)))
    if tracks >= _MIN_TRACKS_FOR_EMPTY:
        must_have.append(len(base) - 1)
    for slot in must_have:
        if counts[slot] == 0:
            counts[int(np.argmax(counts))] -= 1
            counts[slot] = 1
    return {label: n for (label, _), n in zip(base, counts, strict=True) if n > 0}


def _largest_remainder(weights: Sequence[int], total: int) -> list[int]:
    whole = sum(weights)
    quotas = [w * total / whole for w in weights]
    counts = [math.floor(q) for q in quotas]
    # Ties go to the bigger genre, then to table order, so the result is fully deterministic.
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - counts[i]), -weights[i], i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


__all__ = ["genre_counts"]
