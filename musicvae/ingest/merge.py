"""Reads a landing zone laid out as MERGE releases unpack (README: "Use it on your own MERGE
download").

A landing zone is a local folder or an `s3://bucket/prefix`, holding one or more of the six
subset folders (`MERGE_Audio_Complete/`, …, `MERGE_Bimodal_Balanced/`), or one subset folder
itself. The reader pairs each metadata row with its files and says, for every row or file it
cannot use, why.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pandas as pd

from musicvae.core.errors import CatalogueError, MetadataSchemaError
from musicvae.ingest.landing import SUBSETS, Landing

log = logging.getLogger("musicvae.ingest.merge")

QUADRANTS = ("Q1", "Q2", "Q3", "Q4")
AUDIO_SUFFIXES = (".mp3", ".wav", ".flac", ".ogg")
LYRICS_SUFFIX = ".txt"
# Every id shape seen in real MERGE files: A001, A061-66, A106-123, MT0000008995 (L… for lyrics).
AUDIO_ID = re.compile(r"^(?:A\d{3,4}(?:-\d{1,4})?|MT\d{10})$")
LYRIC_ID = re.compile(r"^(?:L\d{3,4}(?:-\d{1,4})?|MT\d{10})$")


def genre_label(genres: str | None) -> str | None:
    """The research code's label: the first listed genre, cut at '/' ('Pop/Rock,Vocal' -> 'Pop')."""
    if not genres or not isinstance(genres, str) or not genres.strip():
        return None
    return genres.split(",")[0].split("/")[0].strip() or None


def split_genres(genres: str | None) -> list[str]:
    if not genres or not isinstance(genres, str):
        return []
    return [g.strip() for g in genres.split(",") if g.strip()]


@dataclass
class TrackEntry:
    subset: str
    song_id: str
    audio_song: str | None
    lyric_song: str | None
    quadrant: str | None
    metadata: dict
    audio_path: str | None = None
    lyrics_path: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def track_id(self) -> str:
        return f"{self.subset}/{self.song_id}"

    @property
    def genres(self) -> list[str]:
        return split_genres(self.metadata.get("Genres"))

    @property
    def genre(self) -> str | None:
        return genre_label(self.metadata.get("Genres"))


@dataclass(frozen=True)
class Rejection:
    subset: str
    item: str
    reason: str


def _subset_modalities(subset: str) -> tuple[bool, bool]:
    kind = subset.split("_")[0]
    return kind in ("audio", "bimodal"), kind in ("lyrics", "bimodal")


# Metadata rows parsed at a time: the ingest's plan holds one chunk of rows, not the release.
METADATA_CHUNK_ROWS = 10_000


def _read_metadata(landing: Landing, rel: str, header_only: bool = False) -> Iterator[pd.DataFrame]:
    """The metadata CSV, streamed from the landing in chunks of METADATA_CHUNK_ROWS rows, or
    only its (empty) header."""
    # Real MERGE CSVs mix encodings; undecodable bytes become U+FFFD instead of failing the batch.
    options = {"dtype": str, "keep_default_na": False, "encoding_errors": "replace"}
    try:
        with landing.stream(rel) as f:
            if header_only:
                chunks = iter([pd.read_csv(f, nrows=0, **options)])
            else:
                chunks = pd.read_csv(f, chunksize=METADATA_CHUNK_ROWS, **options)
            for df in chunks:
                df.columns = [c.strip().lstrip("\ufeff") for c in df.columns]
                yield df
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeError) as e:
        raise CatalogueError(f"{rel}: cannot parse the metadata CSV ({e})") from e


def _metadata_file(folder: str, names: set[str], subset: str) -> str:
    expected = f"{folder}/merge_{subset}_metadata.csv"
    if expected in names:
        return expected
    raise CatalogueError(
        f"{folder}: no merge_{subset}_metadata.csv found; a MERGE release folder holds its "
        "metadata CSV next to the Q1..Q4 folders"
    )


def _index_files(
    rel_paths: list[str], base: str, suffixes: tuple[str, ...]
) -> tuple[dict[str, list[str]], list[str]]:
    """Map id (file stem) -> paths under base/Q1..Q4; also return stray files there."""
    index: dict[str, list[str]] = {}
    stray = []
    for rel in rel_paths:
        parts = PurePosixPath(rel).relative_to(base).parts
        name = parts[-1]
        if name.startswith("."):
            continue  # .DS_Store and friends: OS litter, not data
        if (
            len(parts) == 2
            and parts[0] in QUADRANTS
            and PurePosixPath(name).suffix.lower() in suffixes
        ):
            index.setdefault(PurePosixPath(name).stem, []).append(rel)
        else:
            stray.append(rel)
    return index, stray


def scan(landing: Landing, rel_paths: list[str]) -> list[SubsetScan]:
    """Every MERGE subset folder found in the landing zone, ready to pair its metadata rows
    with its files. Each checks its metadata's header here, so a release missing a required
    column fails before any of its tracks is handed on.

    An empty landing zone has nothing to pair yet (an hourly run before the first download
    lands); one that holds files but no MERGE folder is pointed at the wrong place.
    """
    if not rel_paths:
        return []
    folders = sorted({p.split("/", 1)[0] for p in rel_paths if "/" in p} & set(SUBSETS))
    if not folders:
        raise CatalogueError(
            f"no MERGE subset folder ({', '.join(SUBSETS)}) in {landing.describe()}, and it is "
            "not one itself (no merge_<subset>_metadata.csv in it). Point the landing zone at "
            "the folder that holds the unzipped MERGE_* folders, or at one of them."
        )
    return [
        SubsetScan(landing, folder, sorted(p for p in rel_paths if p.startswith(folder + "/")))
        for folder in folders
    ]


class SubsetScan:
    """One subset folder: its metadata rows paired with its files, a chunk of rows at a time.

    Only the folder's file index and the ids seen are held, so a release of any size streams
    through `entries()`; `rejections` (rows and files that cannot be used, and why) is complete
    once `entries()` has run to its end.
    """

    def __init__(self, landing: Landing, folder: str, paths: list[str]):
        self.landing, self.folder, self.subset = landing, folder, SUBSETS[folder]
        self.has_audio, self.has_lyrics = _subset_modalities(self.subset)
        self.bimodal = self.has_audio and self.has_lyrics
        self.meta_path = _metadata_file(folder, set(paths), self.subset)
        [header] = _read_metadata(landing, self.meta_path, header_only=True)
        id_cols = ["Audio_Song", "Lyric_Song"] if self.bimodal else ["Song"]
        missing = [c for c in [*id_cols, "Quadrant"] if c not in header.columns]
        if missing:
            raise MetadataSchemaError(
                f"{self.meta_path}: required column(s) {missing} missing, so no row can be "
                "paired with its files; nothing was ingested. Restore the column from the MERGE "
                "release."
            )
        audio_base = f"{folder}/audio" if self.bimodal else folder
        lyrics_base = f"{folder}/lyrics" if self.bimodal else folder
        self.audio_files, stray_audio = _index_files(
            [p for p in paths if self.has_audio and p.startswith(audio_base + "/")],
            audio_base,
            AUDIO_SUFFIXES,
        )
        self.lyric_files, stray_lyrics = _index_files(
            [p for p in paths if self.has_lyrics and p.startswith(lyrics_base + "/")],
            lyrics_base,
            (LYRICS_SUFFIX,),
        )
        elsewhere = [
            p
            for p in paths
            if self.bimodal and not p.startswith((audio_base + "/", lyrics_base + "/"))
        ]
        # The metadata, av_values and tvt split CSVs are part of a release; hidden files are litter.
        self.strays = [
            rel
            for rel in stray_audio + stray_lyrics + elsewhere
            if not rel.endswith(".csv") and not PurePosixPath(rel).name.startswith(".")
        ]
        self._rejections: list[Rejection] | None = None

    @property
    def rejections(self) -> list[Rejection]:
        if self._rejections is None:
            raise RuntimeError(f"{self.folder}: read entries() to its end before its rejections")
        return self._rejections

    def entries(self) -> Iterator[TrackEntry]:
        rejections: list[Rejection] = []
        seen: set[str] = set()
        known_ids: set[str | None] = set()
        for df in _read_metadata(self.landing, self.meta_path):
            for row in df.to_dict("records"):
                entry = self._entry(row, seen, rejections)
                if entry is not None:
                    known_ids.update((entry.audio_song, entry.lyric_song))
                    yield entry
        for files in (self.audio_files, self.lyric_files):
            for file_id, rels in files.items():
                if file_id not in known_ids:
                    rejections.extend(
                        Rejection(self.subset, rel, f"no metadata row for id {file_id!r}")
                        for rel in rels
                    )
        rejections.extend(
            Rejection(self.subset, rel, "file outside the MERGE layout") for rel in self.strays
        )
        self._rejections = rejections

    def _entry(self, row: dict, seen: set[str], rejections: list[Rejection]) -> TrackEntry | None:
        """The row as a track paired with its files, or None with the reason in `rejections`."""
        if self.bimodal:
            audio_id, lyric_id = row["Audio_Song"].strip(), row["Lyric_Song"].strip()
        else:
            song = row["Song"].strip()
            audio_id, lyric_id = (song, None) if self.has_audio else (None, song)
        song_id = audio_id if self.has_audio else lyric_id
        reason = _id_problem(audio_id, AUDIO_ID) or _id_problem(lyric_id, LYRIC_ID)
        if reason:
            rejections.append(Rejection(self.subset, song_id or "<empty>", reason))
            return None
        if song_id in seen:
            rejections.append(Rejection(self.subset, song_id, "duplicate metadata row for this id"))
            return None
        seen.add(song_id)
        quadrant = row.get("Quadrant", "").strip() or None
        entry = TrackEntry(self.subset, song_id, audio_id, lyric_id, quadrant, row)
        if self.has_audio:
            entry.audio_path = _pick(self.audio_files.get(audio_id, []), quadrant, entry, "audio")
        if self.has_lyrics:
            entry.lyrics_path = _pick(self.lyric_files.get(lyric_id, []), quadrant, entry, "lyrics")
        return entry


def _id_problem(value: str | None, pattern: re.Pattern) -> str | None:
    if value is None:
        return None
    if not value:
        return "empty id"
    if "/" in value or "\\" in value or ".." in value or "\x00" in value:
        return f"unsafe id {value!r} (path separators or '..' are never used as file names)"
    if not pattern.match(value):
        return f"malformed id {value!r} (expected A001, A061-66, L051 or MT0000008995 shapes)"
    return None


def _pick(candidates: list[str], quadrant: str | None, entry: TrackEntry, what: str) -> str | None:
    if not candidates:
        entry.problems.append(f"{what} file missing")
        return None
    preferred = [c for c in candidates if c.split("/")[-2] == quadrant]
    if len(candidates) > 1 and len(preferred) != 1:
        entry.problems.append(f"{what} file ambiguous: {', '.join(candidates)}")
        return None
    return (preferred or candidates)[0]
