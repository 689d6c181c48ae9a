"""Reads a landing zone laid out as MERGE releases unpack (README: "Use it on your own MERGE
download").

A landing zone is a local folder or an `s3://bucket/prefix`, holding one or more of the six
subset folders (`MERGE_Audio_Complete/`, …, `MERGE_Bimodal_Balanced/`), or one subset folder
itself. The reader pairs each metadata row with its files and says, for every row or file it
cannot use, why.

The file list goes to temporary tables of the caller's PostgreSQL transaction as it streams
from the landing zone, and the metadata is read a chunk of rows at a time, each chunk paired
with its files there: the reader holds a chunk, not the release, however large the release.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pandas as pd
import sqlalchemy as sa

from musicvae.core.db import copy_rows
from musicvae.core.errors import CatalogueError, MetadataSchemaError
from musicvae.ingest.landing import SUBSETS, FileStat, Landing

log = logging.getLogger("musicvae.ingest.merge")

QUADRANTS = ("Q1", "Q2", "Q3", "Q4")
AUDIO_SUFFIXES = (".mp3", ".wav", ".flac", ".ogg")
LYRICS_SUFFIX = ".txt"
# Every id shape seen in real MERGE files: A001, A061-66, A106-123, MT0000008995 (L… for lyrics).
AUDIO_ID = re.compile(r"^(?:A\d{3,4}(?:-\d{1,4})?|MT\d{10})$")
LYRIC_ID = re.compile(r"^(?:L\d{3,4}(?:-\d{1,4})?|MT\d{10})$")
# Metadata rows parsed, and listed files sent to PostgreSQL, at a time.
METADATA_CHUNK_ROWS = 10_000
LISTING_CHUNK_FILES = 20_000


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
    # Each paired file's [size, version] as the landing zone listed it.
    stats: dict[str, list[int]] = field(default_factory=dict)

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


def _place(folder: str, inside: str) -> tuple[str, str | None] | None:
    """Where a file of a subset folder sits in the MERGE layout: ('audio' or 'lyrics', its id)
    for a data file, ('stray', None) for a file outside the layout, None for what a release
    holds beside its data (its CSVs) and for hidden files (OS litter)."""
    name = PurePosixPath(inside).name
    if name.startswith("."):
        return None
    has_audio, has_lyrics = _subset_modalities(SUBSETS[folder])
    if has_audio and has_lyrics:  # bimodal folders hold audio/Q1..Q4 and lyrics/Q1..Q4
        kind, _, inside = inside.partition("/")
    else:
        kind = "audio" if has_audio else "lyrics"
    parts = inside.split("/")
    suffixes = {"audio": AUDIO_SUFFIXES, "lyrics": (LYRICS_SUFFIX,)}.get(kind, ())
    if len(parts) == 2 and parts[0] in QUADRANTS and PurePosixPath(name).suffix.lower() in suffixes:
        return kind, PurePosixPath(name).stem
    # The metadata, av_values and tvt split CSVs are part of a release.
    return None if name.endswith(".csv") else ("stray", None)


LISTED = ("rel", "size_bytes", "version", "folder", "kind", "file_id")
TABLES = """
DROP TABLE IF EXISTS pg_temp.landing_listing, pg_temp.landing_ids;
CREATE TEMP TABLE landing_listing (rel text NOT NULL, size_bytes bigint NOT NULL,
    version bigint NOT NULL, folder text NOT NULL, kind text NOT NULL, file_id text)
    ON COMMIT DROP;
-- Per subset folder, the song ids of the rows paired so far ('song') and their file ids ('file').
CREATE TEMP TABLE landing_ids (folder text NOT NULL, role text NOT NULL, id text NOT NULL)
    ON COMMIT DROP;
CREATE INDEX ON landing_ids (folder, role, id);
"""


class Listing:
    """A landing zone's files, listed into temporary tables of `conn`'s transaction (they go
    with it) and placed in the MERGE layout as they stream by."""

    def __init__(self, conn, landing: Landing):
        self.conn, self.landing = conn, landing
        self.files = 0
        self.folders: set[str] = set()
        self.present: set[str] = set()  # the subset folders' metadata CSVs
        conn.execute(sa.text(TABLES))
        listed = iter(landing.files())
        while chunk := list(itertools.islice(listed, LISTING_CHUNK_FILES)):
            self.files += len(chunk)
            copy_rows(conn, "landing_listing", LISTED, filter(None, map(self._row, chunk)))
        conn.execute(sa.text("CREATE INDEX ON landing_listing (folder, kind, file_id)"))
        conn.execute(sa.text("ANALYZE landing_listing"))

    def _row(self, item: tuple[str, FileStat]) -> tuple | None:
        rel, stat = item
        folder, _, inside = rel.partition("/")
        if folder not in SUBSETS or not inside:
            return None  # beside the MERGE folders: not a release's
        self.folders.add(folder)
        if inside == f"merge_{SUBSETS[folder]}_metadata.csv":
            self.present.add(rel)
        place = _place(folder, inside)
        return None if place is None else (rel, stat.size, stat.version, folder, *place)

    def subsets(self) -> list[SubsetScan]:
        """Every MERGE subset folder found, ready to pair its metadata rows with its files. Each
        checks its metadata's header here, so a release missing a required column fails before
        any of its tracks is handed on.

        An empty landing zone has nothing to pair yet (an hourly run before the first download
        lands); one that holds files but no MERGE folder is pointed at the wrong place.
        """
        if self.files and not self.folders:
            raise CatalogueError(
                f"no MERGE subset folder ({', '.join(SUBSETS)}) in {self.landing.describe()}, "
                "and it is not one itself (no merge_<subset>_metadata.csv in it). Point the "
                "landing zone at the folder that holds the unzipped MERGE_* folders, or at one "
                "of them."
            )
        return [SubsetScan(self, folder) for folder in sorted(self.folders)]

    def files_of(self, folder: str, kind: str, ids: list[str]) -> dict[str, dict[str, list[int]]]:
        """id -> {path: [size, version]} of the folder's `kind` files named by `ids`."""
        found: dict[str, dict[str, list[int]]] = {}
        for file_id, rel, size, version in self.conn.execute(
            sa.text(
                "SELECT file_id, rel, size_bytes, version FROM landing_listing "
                "WHERE folder = :f AND kind = :k AND file_id = ANY(:ids) ORDER BY rel"
            ),
            {"f": folder, "k": kind, "ids": ids},
        ):
            found.setdefault(file_id, {})[rel] = [size, version]
        return found

    def known(self, folder: str, role: str, ids: list[str]) -> set[str]:
        """Which of `ids` were remembered for the folder in `role`."""
        return set(
            self.conn.execute(
                sa.text(
                    "SELECT id FROM landing_ids WHERE folder = :f AND role = :r AND id = ANY(:ids)"
                ),
                {"f": folder, "r": role, "ids": ids},
            ).scalars()
        )

    def remember(self, folder: str, entries: list[TrackEntry]) -> None:
        """The entries' song ids (to find later duplicates) and file ids (to find orphans)."""
        rows = [(folder, "song", e.song_id) for e in entries]
        rows += [
            (folder, "file", file_id)
            for e in entries
            for file_id in (e.audio_song, e.lyric_song)
            if file_id
        ]
        copy_rows(self.conn, "landing_ids", ("folder", "role", "id"), rows)

    def orphans(self, folder: str) -> list[tuple[str, str]]:
        """(path, id) of the folder's data files that no remembered row names."""
        return self.conn.execute(
            sa.text(
                "SELECT rel, file_id FROM landing_listing l WHERE folder = :f AND kind <> 'stray' "
                "AND NOT EXISTS (SELECT FROM landing_ids i WHERE i.folder = :f "
                "AND i.role = 'file' AND i.id = l.file_id) ORDER BY kind, rel"
            ),
            {"f": folder},
        ).all()

    def strays(self, folder: str) -> list[str]:
        """The folder's files outside the MERGE layout."""
        return (
            self.conn.execute(
                sa.text(
                    "SELECT rel FROM landing_listing WHERE folder = :f AND kind = 'stray' "
                    "ORDER BY rel"
                ),
                {"f": folder},
            )
            .scalars()
            .all()
        )


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


class SubsetScan:
    """One subset folder: its metadata rows paired with its files, a chunk of rows at a time.

    A release of any size streams through `entries()`; `rejections` (rows and files that cannot
    be used, and why) is complete once `entries()` has run to its end.
    """

    def __init__(self, listing: Listing, folder: str):
        self.listing, self.folder, self.subset = listing, folder, SUBSETS[folder]
        self.has_audio, self.has_lyrics = _subset_modalities(self.subset)
        self.bimodal = self.has_audio and self.has_lyrics
        self.meta_path = f"{folder}/merge_{self.subset}_metadata.csv"
        if self.meta_path not in listing.present:
            raise CatalogueError(
                f"{folder}: no merge_{self.subset}_metadata.csv found; a MERGE release folder "
                "holds its metadata CSV next to the Q1..Q4 folders"
            )
        [header] = _read_metadata(listing.landing, self.meta_path, header_only=True)
        id_cols = ["Audio_Song", "Lyric_Song"] if self.bimodal else ["Song"]
        missing = [c for c in [*id_cols, "Quadrant"] if c not in header.columns]
        if missing:
            raise MetadataSchemaError(
                f"{self.meta_path}: required column(s) {missing} missing, so no row can be "
                "paired with its files; nothing was ingested. Restore the column from the MERGE "
                "release."
            )
        self._rejections: list[Rejection] | None = None

    @property
    def rejections(self) -> list[Rejection]:
        if self._rejections is None:
            raise RuntimeError(f"{self.folder}: read entries() to its end before its rejections")
        return self._rejections

    def entries(self) -> Iterator[TrackEntry]:
        rejections: list[Rejection] = []
        for df in _read_metadata(self.listing.landing, self.meta_path):
            entries = self._pair(df.to_dict("records"), rejections)
            self.listing.remember(self.folder, entries)
            yield from entries
        rejections += [
            Rejection(self.subset, rel, f"no metadata row for id {file_id!r}")
            for rel, file_id in self.listing.orphans(self.folder)
        ]
        rejections += [
            Rejection(self.subset, rel, "file outside the MERGE layout")
            for rel in self.listing.strays(self.folder)
        ]
        self._rejections = rejections

    def _ids(self, row: dict) -> tuple[str | None, str | None]:
        if self.bimodal:
            return row["Audio_Song"].strip(), row["Lyric_Song"].strip()
        song = row["Song"].strip()
        return (song, None) if self.has_audio else (None, song)

    def _pair(self, rows: list[dict], rejections: list[Rejection]) -> list[TrackEntry]:
        """A chunk of rows as tracks paired with their files; a row that cannot be used goes to
        `rejections` with the reason."""
        ids = [self._ids(row) for row in rows]
        songs = [a if self.has_audio else lyric for a, lyric in ids]
        seen = self.listing.known(self.folder, "song", [s for s in songs if s])
        audio = self.listing.files_of(self.folder, "audio", [a for a, _ in ids if a])
        lyrics = self.listing.files_of(self.folder, "lyrics", [lyric for _, lyric in ids if lyric])
        entries = []
        for row, (audio_id, lyric_id), song_id in zip(rows, ids, songs, strict=True):
            reason = _id_problem(audio_id, AUDIO_ID) or _id_problem(lyric_id, LYRIC_ID)
            if reason:
                rejections.append(Rejection(self.subset, song_id or "<empty>", reason))
                continue
            if song_id in seen:
                rejections.append(
                    Rejection(self.subset, song_id, "duplicate metadata row for this id")
                )
                continue
            seen.add(song_id)
            quadrant = row.get("Quadrant", "").strip() or None
            entry = TrackEntry(self.subset, song_id, audio_id, lyric_id, quadrant, row)
            if self.has_audio:
                entry.audio_path = _pick(audio.get(audio_id, {}), quadrant, entry, "audio")
            if self.has_lyrics:
                entry.lyrics_path = _pick(lyrics.get(lyric_id, {}), quadrant, entry, "lyrics")
            entries.append(entry)
        return entries


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


def _pick(
    candidates: dict[str, list[int]], quadrant: str | None, entry: TrackEntry, what: str
) -> str | None:
    """The one of the id's files (path -> [size, version]) the row pairs with, its stats noted
    on the entry; or None with the problem noted."""
    if not candidates:
        entry.problems.append(f"{what} file missing")
        return None
    preferred = [c for c in candidates if c.split("/")[-2] == quadrant]
    if len(candidates) > 1 and len(preferred) != 1:
        entry.problems.append(f"{what} file ambiguous: {', '.join(candidates)}")
        return None
    path = (preferred or list(candidates))[0]
    entry.stats[path] = candidates[path]
    return path
