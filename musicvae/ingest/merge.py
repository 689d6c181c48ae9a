"""Reads a landing zone laid out as MERGE releases unpack (README: "Use it on your own MERGE
download").

A landing zone is a local folder or an `s3://bucket/prefix`, holding one or more of the six
subset folders (`MERGE_Audio_Complete/`, …, `MERGE_Bimodal_Balanced/`), or one subset folder
itself. The reader pairs each metadata row with its files and says, for every row or file it
cannot use, why.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from musicvae.core.errors import CatalogueError, MetadataSchemaError

log = logging.getLogger("musicvae.ingest.merge")

SUBSETS = {
    f"MERGE_{kind.title()}_{size.title()}": f"{kind}_{size}"
    for kind in ("audio", "lyrics", "bimodal")
    for size in ("complete", "balanced")
}
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


# -- landing zones ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FileStat:
    size: int
    # Local files: st_mtime_ns. S3 objects: a number derived from the ETag; either way, a value
    # that changes when the content may have changed.
    version: int


class Landing:
    """Where new MERGE downloads are dropped. Paths are POSIX, relative to the landing root."""

    def files(self) -> Iterator[tuple[str, FileStat]]:
        raise NotImplementedError

    def read(self, rel: str) -> bytes:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def contains(self, rel: str) -> bool:
        """Whether a file or folder `rel` exists directly under the root."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        """The root's own folder name."""
        return PurePosixPath(self.describe().rstrip("/")).name

    def uri(self, rel: str) -> str:
        """Where a file is, for people and for the ingest's hash cache."""
        return f"{self.describe().rstrip('/')}/{rel}"

    @staticmethod
    def open(location: str, store=None) -> Landing:
        if location.startswith("s3://"):
            if store is None:
                raise CatalogueError("an s3:// landing zone needs an object store client")
            bucket, _, prefix = location[len("s3://") :].partition("/")
            landing: Landing = S3Landing(store.client, bucket, prefix)
        else:
            path = Path(location)
            if not path.is_dir():
                raise CatalogueError(
                    f"landing zone {location!r} is not a folder; set MUSICVAE_LANDING to the "
                    "folder that holds the unzipped MERGE_* folders, or to one of them (or to "
                    "s3://bucket/prefix)"
                )
            landing = LocalLanding(path)
        folder = _subset_folder(landing)
        return SubsetFolderLanding(landing, folder) if folder else landing


def _subset_folder(landing: Landing) -> str | None:
    """The MERGE folder name when the landing root is one subset folder itself, else None.

    A root that holds subset folders is a parent, whatever it is called (unzipping often nests
    `MERGE_Audio_Complete/MERGE_Audio_Complete/`). Otherwise its name, or the metadata CSV in
    it, says which subset it is.
    """
    if any(landing.contains(folder) for folder in SUBSETS):
        return None
    if landing.name in SUBSETS:
        return landing.name
    for folder, subset in SUBSETS.items():
        if landing.contains(f"merge_{subset}_metadata.csv"):
            return folder
    return None


class LocalLanding(Landing):
    def __init__(self, root: Path):
        self.root = root.resolve()
        self.skipped_links: list[str] = []

    def files(self) -> Iterator[tuple[str, FileStat]]:
        # followlinks=False and the is_symlink check: a link could point outside the landing zone.
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath, name)
                rel = path.relative_to(self.root).as_posix()
                if path.is_symlink():
                    self.skipped_links.append(rel)
                    continue
                st = path.stat()
                yield rel, FileStat(st.st_size, st.st_mtime_ns)
            for name in dirnames:
                if Path(dirpath, name).is_symlink():
                    self.skipped_links.append(Path(dirpath, name).relative_to(self.root).as_posix())

    def read(self, rel: str) -> bytes:
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root):
            raise CatalogueError(f"{rel!r} resolves outside the landing zone; refusing to read it")
        return path.read_bytes()

    def describe(self) -> str:
        return str(self.root)

    def contains(self, rel: str) -> bool:
        return (self.root / rel).exists()


class S3Landing(Landing):
    def __init__(self, client, bucket: str, prefix: str):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.skipped_links: list[str] = []

    def files(self) -> Iterator[tuple[str, FileStat]]:
        for obj in self.client.list_objects(self.bucket, prefix=self.prefix, recursive=True):
            rel = obj.object_name[len(self.prefix) :]
            etag = (obj.etag or "").strip('"')
            version = int(etag[:15], 16) if re.fullmatch(r"[0-9a-f]{15,}.*", etag) else 0
            yield rel, FileStat(obj.size, version)

    def read(self, rel: str) -> bytes:
        response = self.client.get_object(self.bucket, self.prefix + rel)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def contains(self, rel: str) -> bool:
        key = self.prefix + rel
        return any(
            obj.object_name.rstrip("/") == key
            for obj in self.client.list_objects(self.bucket, prefix=key)
        )


class SubsetFolderLanding(Landing):
    """One subset folder used as the landing zone. Its files are named as if the landing held
    the folder (`MERGE_Audio_Complete/Q1/A001.mp3`), so a track's id does not depend on which
    of the two the user points at, and switching between them duplicates nothing."""

    def __init__(self, inner: Landing, folder: str):
        self.inner, self.folder = inner, folder

    def files(self) -> Iterator[tuple[str, FileStat]]:
        for rel, stat in self.inner.files():
            yield f"{self.folder}/{rel}", stat

    def _inner_rel(self, rel: str) -> str:
        if not rel.startswith(self.folder + "/"):
            raise CatalogueError(f"{rel!r} is not in the landing zone's {self.folder} folder")
        return rel[len(self.folder) + 1 :]

    def read(self, rel: str) -> bytes:
        return self.inner.read(self._inner_rel(rel))

    def describe(self) -> str:
        return self.inner.describe()

    def contains(self, rel: str) -> bool:
        return self.inner.contains(self._inner_rel(rel))

    def uri(self, rel: str) -> str:
        return self.inner.uri(self._inner_rel(rel))

    @property
    def skipped_links(self) -> list[str]:
        return [f"{self.folder}/{rel}" for rel in getattr(self.inner, "skipped_links", [])]


# -- the MERGE layout ------------------------------------------------------------------------


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


@dataclass
class SubsetScan:
    subset: str
    folder: str
    entries: list[TrackEntry]
    rejections: list[Rejection]


def _subset_modalities(subset: str) -> tuple[bool, bool]:
    kind = subset.split("_")[0]
    return kind in ("audio", "bimodal"), kind in ("lyrics", "bimodal")


def _read_metadata(data: bytes, where: str) -> pd.DataFrame:
    # Real MERGE CSVs mix encodings; undecodable bytes become U+FFFD instead of failing the batch.
    try:
        df = pd.read_csv(
            io.BytesIO(data),
            dtype=str,
            keep_default_na=False,
            encoding="utf-8",
            encoding_errors="replace",
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeError) as e:
        raise CatalogueError(f"{where}: cannot parse the metadata CSV ({e})") from e
    df.columns = [c.strip().lstrip("\ufeff") for c in df.columns]
    return df


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
    """Pair metadata rows with files for every MERGE subset folder found in the landing zone."""
    names = set(rel_paths)
    folders = sorted({p.split("/", 1)[0] for p in rel_paths if "/" in p} & set(SUBSETS))
    if not folders:
        raise CatalogueError(
            f"no MERGE subset folder ({', '.join(SUBSETS)}) in {landing.describe()}, and it is "
            "not one itself (no merge_<subset>_metadata.csv in it). Point the landing zone at "
            "the folder that holds the unzipped MERGE_* folders, or at one of them."
        )
    return [
        _scan_subset(landing, folder, sorted(p for p in names if p.startswith(folder + "/")))
        for folder in folders
    ]


def _scan_subset(landing: Landing, folder: str, paths: list[str]) -> SubsetScan:
    subset = SUBSETS[folder]
    has_audio, has_lyrics = _subset_modalities(subset)
    bimodal = has_audio and has_lyrics
    meta_path = _metadata_file(folder, set(paths), subset)
    df = _read_metadata(landing.read(meta_path), meta_path)
    id_cols = ["Audio_Song", "Lyric_Song"] if bimodal else ["Song"]
    missing = [c for c in [*id_cols, "Quadrant"] if c not in df.columns]
    if missing:
        raise MetadataSchemaError(
            f"{meta_path}: required column(s) {missing} missing, so no row can be paired with "
            "its files; nothing was ingested. Restore the column from the MERGE release."
        )

    audio_base = f"{folder}/audio" if bimodal else folder
    lyrics_base = f"{folder}/lyrics" if bimodal else folder
    audio_files, stray_a = (
        _index_files(
            [p for p in paths if p.startswith(audio_base + "/")], audio_base, AUDIO_SUFFIXES
        )
        if has_audio
        else ({}, [])
    )
    lyric_files, stray_l = (
        _index_files(
            [p for p in paths if p.startswith(lyrics_base + "/")], lyrics_base, (LYRICS_SUFFIX,)
        )
        if has_lyrics
        else ({}, [])
    )

    entries: list[TrackEntry] = []
    rejections: list[Rejection] = []
    seen: set[str] = set()
    for row in df.to_dict("records"):
        audio_id = (
            row["Audio_Song"].strip() if bimodal else (row["Song"].strip() if has_audio else None)
        )
        lyric_id = (
            row["Lyric_Song"].strip() if bimodal else (row["Song"].strip() if has_lyrics else None)
        )
        song_id = audio_id if has_audio else lyric_id
        reason = _id_problem(audio_id, AUDIO_ID) or _id_problem(lyric_id, LYRIC_ID)
        if reason:
            rejections.append(Rejection(subset, song_id or "<empty>", reason))
            continue
        if song_id in seen:
            rejections.append(Rejection(subset, song_id, "duplicate metadata row for this id"))
            continue
        seen.add(song_id)
        quadrant = row.get("Quadrant", "").strip() or None
        entry = TrackEntry(subset, song_id, audio_id, lyric_id, quadrant, row)
        if has_audio:
            entry.audio_path = _pick(audio_files.get(audio_id, []), quadrant, entry, "audio")
        if has_lyrics:
            entry.lyrics_path = _pick(lyric_files.get(lyric_id, []), quadrant, entry, "lyrics")
        entries.append(entry)

    known_ids = {e.audio_song for e in entries} | {e.lyric_song for e in entries}
    for files in (audio_files, lyric_files):
        for file_id, rels in files.items():
            if file_id not in known_ids:
                rejections.extend(
                    Rejection(subset, rel, f"no metadata row for id {file_id!r}") for rel in rels
                )
    elsewhere = [
        p for p in paths if bimodal and not p.startswith((audio_base + "/", lyrics_base + "/"))
    ]
    for rel in stray_a + stray_l + elsewhere:
        # The metadata, av_values and tvt split CSVs are part of a release; hidden files are litter.
        if not rel.endswith(".csv") and not PurePosixPath(rel).name.startswith("."):
            rejections.append(Rejection(subset, rel, "file outside the MERGE layout"))
    return SubsetScan(subset, folder, entries, rejections)


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
