"""The sample's metadata CSV: the planned rows (IDs, quadrants, genre labels) and the 27 MERGE
columns of each, with MERGE's dirty corners (mojibake artists, messy years, quoted titles)."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from musicvae.local.sample import seeding
from musicvae.local.sample.genres import PARENT, PRIMARY, SIBLINGS, genre_counts
from musicvae.local.sample.lyrics import words

QUADRANTS = ("Q1", "Q2", "Q3", "Q4")

METADATA_COLUMNS = [
    "Audio_Song",
    "Lyric_Song",
    "Quadrant",
    "AllMusic Id",
    "AllMusic Extraction Date",
    "Artist",
    "Title",
    "Relevance",
    "Year",
    "LowestYear",
    "Duration",
    "Moods",
    "MoodsAll",
    "MoodsAllWeights",
    "Genres",
    "GenreWeights",
    "Themes",
    "ThemeWeights",
    "Styles",
    "StyleWeights",
    "AppearancesTrackIDs",
    "AppearancesAlbumIDs",
    "Sample",
    "SampleURL",
    "ActualYear",
    "num_Genres",
    "num_MoodsAll",
]

# Guarantees every ID shape in any sample of at least three rows; MT rows dominate as in MERGE.
_ID_PATTERN = ("MT", "A", "A-", "MT", "A", "MT", "MT", "A", "MT", "A-")
_LYRIC_OFFSET = 50  # A001 <-> L051: the A/L numbering of MERGE's two halves is out of step
# MERGE's A and L ids have at most four digits; a larger catalogue takes MT ids after this.
_LAST_A_NUMBER = 9999 - _LYRIC_OFFSET

_FIRST = words(
    "John Mary Ella Frank Nina Otis Patsy Willie Aretha Johnny Dolly Marvin Billie Sam "
    "Loretta Bobby Etta Ray Carole Neil Joni Stevie Whitney Luther Tammy Curtis Gladys Hank"
)
_LAST = words(
    "Smith Cash Parton Gaye Holiday Cooke Lynn Dylan James Charles King Young Mitchell "
    "Wonder Houston Vandross Wynette Mayfield Knight Williams Brown Jones Carter Reed"
)
_BANDS = words(
    "The Midnight Riders|The Velvet Hours|Silver Lanterns|The Paper Kites Revival|Northbound"
    "|Blue Harbor|The Static Hearts|Crimson Avenue|Golden Hour Club|The Low Tides",
    "|",
)
_ACCENTED = (
    "Michael Bublé",
    "Sinéad O’Connor",
    "Beyoncé",
    "Björk",
    "Mötley Crüe",
    "José González",
    "Françoise Hardy",
    "Sigur Rós",
    "Céline Dion",
    "Zoë Keating",
)
_TITLE_WORDS = words(
    "Love Night Heart Fire Rain River Road Home Dream Blue Midnight Summer Angel Shadow "
    "Highway Tonight Forever Golden Broken Lonely Sweet Wild Morning Stars Train Letter"
)
_THEMES = words(
    "Love|Heartache|Road Trip|Party Time|Late Night|Reflection|Romantic Evening|Summertime"
    "|Breakup|Rainy Day|Celebration|Drinking|Motivation|Girls Night Out|Introspection|Sex",
    "|",
)
_MOODS = {
    "Q1": "Exuberant|Energetic|Happy|Cheerful|Rousing|Fun|Joyous|Playful|Lively|Upbeat",
    "Q2": "Aggressive|Angry|Tense/Anxious|Fiery|Intense|Hostile|Confrontational|Brooding",
    "Q3": "Sad|Melancholy|Gloomy|Bleak|Wistful|Somber|Yearning|Lonely|Regretful|Bittersweet",
    "Q4": "Calm/Peaceful|Relaxed|Tender|Soothing|Warm|Gentle|Dreamy|Laid-Back|Serene|Sweet",
}
_MOODS_ANY = words(
    "Reflective|Earnest|Sentimental|Passionate|Romantic|Confident|Stylish|Sensual", "|"
)


@dataclass(frozen=True)
class Row:
    """One planned track: identity and the parts audio/lyrics rendering needs."""

    index: int
    audio_id: str
    lyric_id: str
    allmusic_id: str
    quadrant: str
    label: str | None


def plan(tracks: int, seed: int) -> list[Row]:
    rng = seeding.rng(seed, seeding.STREAM_PLAN)
    labels = [label for label, n in genre_counts(tracks).items() for _ in range(n)]
    labels = [labels[i] for i in rng.permutation(tracks)]
    allmusic = rng.choice(np.arange(1000, 1_000_000), size=tracks, replace=False)
    rows, a_number = [], 0
    for i in range(tracks):
        mt = f"MT{int(allmusic[i]):010d}"
        kind = _ID_PATTERN[i % len(_ID_PATTERN)]
        if kind == "MT" or a_number == _LAST_A_NUMBER:
            audio_id = lyric_id = mt
        else:
            a_number += 1
            suffix = f"-{int(rng.integers(10, 100))}" if kind == "A-" else ""
            audio_id = f"A{a_number:03d}{suffix}"
            lyric_id = f"L{a_number + _LYRIC_OFFSET:03d}{suffix}"
        quadrant = QUADRANTS[i * len(QUADRANTS) // tracks]
        rows.append(Row(i, audio_id, lyric_id, mt, quadrant, labels[i]))
    return rows


def metadata(row: Row, seed: int) -> dict[str, object]:
    rng = seeding.rng(seed, row.index, seeding.STREAM_META)
    year = int(rng.integers(1955, 2019))
    genres = _genres_field(row.label, rng)
    moods, moods_all = _moods(row.quadrant, rng)
    styles = _styles(row.label, rng)
    themes = list(rng.choice(_THEMES, size=int(rng.integers(1, 4)), replace=False))
    return {
        "Audio_Song": row.audio_id,
        "Lyric_Song": row.lyric_id,
        "Quadrant": row.quadrant,
        "AllMusic Id": row.allmusic_id,
        "AllMusic Extraction Date": _extraction_date(rng),
        "Artist": _artist(row.index, rng),
        "Title": _title(row.index, rng),
        "Relevance": round(float(rng.uniform(0.2, 1.0)), 3),
        "Year": _messy_year(row.index, year, rng),
        "LowestYear": year,
        "Duration": int(rng.integers(140, 420)),
        "Moods": ",".join(moods),
        "MoodsAll": ",".join(moods_all),
        "MoodsAllWeights": _weights(len(moods_all), rng),
        "Genres": ",".join(genres),
        "GenreWeights": _weights(len(genres), rng),
        "Themes": ",".join(themes),
        "ThemeWeights": _weights(len(themes), rng),
        "Styles": ",".join(styles),
        "StyleWeights": _weights(len(styles), rng),
        "AppearancesTrackIDs": _id_list("MT", 10, rng),
        "AppearancesAlbumIDs": _id_list("MW", 10, rng),
        "Sample": 1,
        "SampleURL": _sample_url(rng),
        "ActualYear": year,
        "num_Genres": len(genres),
        "num_MoodsAll": len(moods_all),
    }


def _genres_field(label: str | None, rng) -> list[str]:
    if label is None:
        return []
    related = [PRIMARY[other] for other, parent in PARENT.items() if parent == label]
    for other in (PARENT.get(label), SIBLINGS.get(label)):
        if other is not None:
            related.append(PRIMARY[other])
    related += [f"Contemporary {label}", f"Early {PRIMARY[label]}", "Vocal", "Vocal Pop"]
    related = [g for g in dict.fromkeys(related) if g != PRIMARY[label]]
    extra = rng.choice(related, size=int(rng.integers(0, min(6, len(related)) + 1)), replace=False)
    return [PRIMARY[label], *(str(g) for g in extra)]


def _styles(label: str | None, rng) -> list[str]:
    name = label or "Pop"
    pool = [f"Contemporary {name}", f"{name} Ballads", f"Modern {name}", f"Traditional {name}"]
    return [str(s) for s in rng.choice(pool, size=int(rng.integers(1, 4)), replace=False)]


def _moods(quadrant: str, rng) -> tuple[list[str], list[str]]:
    own = _MOODS[quadrant].split("|")
    moods = [str(m) for m in rng.choice(own, size=int(rng.integers(1, 4)), replace=False)]
    more = rng.choice(own + _MOODS_ANY, size=int(rng.integers(3, 9)), replace=False)
    return moods, list(dict.fromkeys(moods + [str(m) for m in more]))


def _weights(count: int, rng) -> str:
    return ",".join(str(w) for w in sorted(rng.integers(1, 11, size=count).tolist(), reverse=True))


def _id_list(prefix: str, digits: int, rng) -> str:
    # Numbers from 1,000,000 up so appearances never alias a catalogue ID.
    numbers = rng.integers(1_000_000, 10**digits, size=int(rng.integers(1, 5)))
    return ",".join(f"{prefix}{int(n):0{digits}d}" for n in numbers)


def _sample_url(rng) -> str:
    token = base64.urlsafe_b64encode(rng.bytes(24)).decode().rstrip("=")
    return f"https://rovimusic.rovicorp.com/playback.mp3?c={token}&f=I"


def _extraction_date(rng) -> str:
    year, month, day = (int(rng.integers(lo, hi)) for lo, hi in ((2016, 2019), (1, 13), (1, 29)))
    return f"{year}-{month:02d}-{day:02d}"


def _mojibake(name: str, variant: int) -> str:
    # Both kinds of damage seen in MERGE: UTF-8 read as Latin-1, and bytes lost to U+FFFD.
    if variant % 2 == 0:
        return "".join(c if ord(c) < 128 else "\ufffd" for c in name)
    return name.encode("utf-8").decode("latin-1")


def _artist(index: int, rng) -> str:
    accented = _ACCENTED[int(rng.integers(len(_ACCENTED)))]
    if index % 6 == 1:
        return _mojibake(accented, index // 6)
    if index % 6 == 4:
        return accented
    if rng.uniform() < 0.3:
        return str(rng.choice(_BANDS))
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def _title(index: int, rng) -> str:
    a, b, c = (str(w) for w in rng.choice(_TITLE_WORDS, size=3, replace=False))
    # Commas and double quotes in titles are what break naive CSV handling.
    return {
        2: f"{a}, {b} {c}",
        3: f'The "{a}" {b}',
        4: f'{a}, "{b}" and {c}',
    }.get(index % 5, f"{a} {b}")


def _messy_year(index: int, year: int, rng) -> str:
    month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
    forms = (
        str(year),
        f"{year}-??-??",
        f"{day:02d}/{month:02d}/{year}",
        str(year),
        f"{year}-{month:02d}-{day:02d}",
        f"{year}-{month:02d}-??",
        str(year),
    )
    return forms[index % len(forms)]


def metadata_csv(rows: Iterable[dict[str, object]], audio_only: bool) -> bytes:
    # Imported here: audio workers import this module and do not need pandas' startup cost.
    import pandas as pd

    rows = list(rows)
    columns = METADATA_COLUMNS
    if audio_only:
        columns = ["Song", *METADATA_COLUMNS[2:]]
        rows = [{"Song": r["Audio_Song"], **r} for r in rows]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8")


__all__ = ["METADATA_COLUMNS"]
