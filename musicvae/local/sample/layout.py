"""Writing the sample's MERGE folder layout: `build_sample`, the marker file that records what
each MP3 was made from (so a rebuild skips unchanged audio), the audio workers, stale-file
removal and the deliberate defects."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from musicvae.local.sample import metadata, seeding
from musicvae.local.sample.audio import encode_mp3, render_audio
from musicvae.local.sample.genres import genre_counts
from musicvae.local.sample.lyrics import render_lyrics

logger = logging.getLogger("musicvae.local.sample")

ROOT_NAME = "MERGE_Bimodal_Balanced"
METADATA_NAME = "merge_bimodal_balanced_metadata.csv"
# The two shapes a sample can take: MERGE's bimodal subsets (audio/ and lyrics/ folders, rows
# keyed by Audio_Song + Lyric_Song) or its audio subsets (Q1..Q4 at the top, rows keyed by Song).
LAYOUTS = {"bimodal_balanced": "MERGE_Bimodal_Balanced", "audio_complete": "MERGE_Audio_Complete"}
# Marks a tree as ours (so stale files may be removed) and records what each MP3 was made from.
MARKER_NAME = ".musicvae-sample"
WORKERS = 2

# Defect rows live in an MT number range that good rows (< 1,000,000) never reach.
DEFECT_IDS = {
    "empty_audio": "MT9999990001",
    "corrupt_audio": "MT9999990002",
    "latin1_lyrics": "MT9999990003",
    "missing_files": "MT9999990004",
    "orphan_files": "MT9999990005",
    "path_traversal": "../../etc/passwd",
}
_TRAVERSAL_LYRIC_ID = "MT9999990006"
_DEFECT_LABEL = "Pop"

# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def write_if_changed(path: Path, data: bytes) -> bool:
    """Atomically write `data` to `path` unless it already holds exactly these bytes.

    Returns True when the file was (re)written. Unchanged files keep their mtime, which is what
    downstream change detection keys on.
    """
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder, so os.replace is a rename on one filesystem: readers never see half a file.
    # A dot-name with .tmp keeps scanners that glob *.mp3 / *.txt away from it meanwhile.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


@functools.cache
def _code_fingerprint() -> bytes:
    # The source of every module whose code decides the audio bytes (audio: the synthesis and
    # encoding; genres: the parent a style leans on; seeding: the random streams; this module:
    # the job that renders and writes), plus the library versions: any change to how audio is
    # made changes the fingerprint, so a rebuild after an upgrade renders again instead of
    # trusting the cache.
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for name in ("audio.py", "genres.py", "seeding.py"):
        digest.update(Path(__file__).with_name(name).read_bytes())
    digest.update(f"{np.__version__} {sf.__version__} {sf.__libsndfile_version__}".encode())
    return digest.digest()


@dataclass(frozen=True)
class _AudioJob:
    path: Path
    label: str | None
    quadrant: str
    seed: int
    index: int

    def key(self) -> str:
        digest = hashlib.sha256(_code_fingerprint())
        digest.update(repr((self.label, self.quadrant, self.seed, self.index)).encode())
        return digest.hexdigest()


def _audio_job(job: _AudioJob) -> tuple[bool, str]:
    data = encode_mp3(render_audio(job.label, job.quadrant, job.seed, job.index))
    return write_if_changed(job.path, data), hashlib.sha256(data).hexdigest()


def _render_audio(root: Path, jobs: list[_AudioJob], progress: bool) -> int:
    """Make every job's MP3 and return how many files were (re)written.

    Rendering is what makes a rebuild slow, so the marker file records, per file, the job key
    and the SHA-256 of the bytes written. A file whose key matches and whose bytes still hash
    to the record is known to be what rendering would produce again, and is skipped.
    """
    known = _read_manifest(root)
    manifest: dict[str, list[str]] = {}
    todo = []
    for job in jobs:
        rel, key = job.path.relative_to(root).as_posix(), job.key()
        record = known.get(rel)
        if record is not None and record[0] == key and _sha256_of(job.path) == record[1]:
            manifest[rel] = record
        else:
            todo.append(job)
    written = 0
    with tqdm(
        total=len(jobs),
        initial=len(jobs) - len(todo),
        desc="sample audio",
        unit="track",
        disable=not progress,
    ) as bar:
        for job, (changed, sha) in zip(todo, _map_audio_jobs(todo), strict=True):
            manifest[job.path.relative_to(root).as_posix()] = [job.key(), sha]
            written += changed
            bar.update()
    _write_manifest(root, manifest)
    return written


def _map_audio_jobs(jobs: list[_AudioJob]) -> Iterator[tuple[bool, str]]:
    # A daemonic process (e.g. a Celery prefork child) may not start children: render in-process.
    if len(jobs) < 2 or multiprocessing.current_process().daemon:
        yield from map(_audio_job, jobs)
        return
    # spawn, not fork: callers (Airflow workers, torch) may hold threads and locks that a
    # forked child would inherit in a broken state.
    context = multiprocessing.get_context("spawn")
    chunk = max(1, len(jobs) // (WORKERS * 8))
    with ProcessPoolExecutor(max_workers=WORKERS, mp_context=context) as pool:
        yield from pool.map(_audio_job, jobs, chunksize=chunk)


def _sha256_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _read_manifest(root: Path) -> dict[str, list[str]]:
    try:
        audio = json.loads((root / MARKER_NAME).read_text(encoding="utf-8"))["audio"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return {}  # no usable record: everything is rendered and compared byte for byte
    return audio if isinstance(audio, dict) else {}


def _write_manifest(root: Path, audio: dict[str, list[str]]) -> None:
    content = {
        "made_by": "musicvae.local.sample.layout.build_sample; safe to delete and rebuild",
        "audio": audio,
    }
    write_if_changed(
        root / MARKER_NAME, (json.dumps(content, indent=1, sort_keys=True) + "\n").encode()
    )


@dataclass(frozen=True)
class SampleSummary:
    """What `build_sample` produced.

    `written` + `unchanged` count the audio, lyrics and metadata files (not the hidden marker).
    `genres` counts good rows per `genre_label`; rows with an empty Genres field are left out.
    """

    root: Path
    tracks: int
    genres: dict[str, int]
    written: int
    unchanged: int
    defects: list[str] = field(default_factory=list)


@dataclass
class _Build:
    """Everything one build will put on disk, collected before anything is written."""

    root: Path
    seed: int
    audio_only: bool = False
    rows: list[dict[str, object]] = field(default_factory=list)
    files: dict[Path, bytes] = field(default_factory=dict)
    audio: list[_AudioJob] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)

    def audio_path(self, quadrant: str, audio_id: str) -> Path:
        folder = self.root if self.audio_only else self.root / "audio"
        return folder / quadrant / f"{audio_id}.mp3"

    def lyrics_path(self, quadrant: str, lyric_id: str) -> Path:
        return self.root / "lyrics" / quadrant / f"{lyric_id}.txt"

    def relative(self, row: metadata.Row, kind: str) -> str:
        if kind == "audio":
            path = self.audio_path(row.quadrant, row.audio_id)
        else:
            path = self.lyrics_path(row.quadrant, row.lyric_id)
        return path.relative_to(self.root).as_posix()

    def add_track(self, row: metadata.Row, with_row: bool = True) -> None:
        if with_row:
            self.rows.append(metadata.metadata(row, self.seed))
        self.add_audio(row)
        self.add_lyrics(row)

    def add_audio(self, row: metadata.Row) -> None:
        path = self.audio_path(row.quadrant, row.audio_id)
        self.audio.append(_AudioJob(path, row.label, row.quadrant, self.seed, row.index))

    def add_lyrics(self, row: metadata.Row) -> None:
        if self.audio_only:
            return
        lyrics = render_lyrics(row.label, row.quadrant, self.seed, row.index)
        self.files[self.lyrics_path(row.quadrant, row.lyric_id)] = lyrics.encode("utf-8")


def build_sample(
    out_dir: Path,
    tracks: int = 200,
    seed: int = 0,
    defects: bool = False,
    progress: bool = True,
    layout: str = "bimodal_balanced",
) -> SampleSummary:
    """Write a MERGE-shaped catalogue of `tracks` good rows under `out_dir`.

    `layout` is the subset it imitates (`LAYOUTS`): MERGE_Bimodal_Balanced, with lyrics, or
    MERGE_Audio_Complete, audio only. The deliberate defects exist in the bimodal shape only.

    Same arguments, same bytes; files whose bytes would not change are not touched (so their
    mtimes stay put), and MP3s recorded in the tree's marker file as already rendered from the
    same inputs by the same code are not even rendered again. Files a previous build left
    behind that this build does not describe are removed, but only in a tree this function
    made: an existing foreign folder is refused (FileExistsError) rather than overwritten.

    Audio is rendered by 2 worker processes; each track's RNG is seeded from (seed, index),
    so the output does not depend on how the work is split.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {sorted(LAYOUTS)}")
    audio_only = layout.startswith("audio")
    if defects and audio_only:
        raise ValueError("the deliberate defects need lyrics: use the bimodal_balanced layout")
    root = Path(out_dir) / LAYOUTS[layout]
    _claim(root)
    build = _Build(root, seed, audio_only)
    plan = metadata.plan(tracks, seed)
    for row in plan:
        build.add_track(row)
    if defects:
        _add_defects(build, tracks)
    build.files[root / f"merge_{layout}_metadata.csv"] = metadata.metadata_csv(
        build.rows, audio_only
    )

    written = sum(write_if_changed(path, data) for path, data in build.files.items())
    written += _render_audio(root, build.audio, progress)
    total = len(build.files) + len(build.audio)
    _remove_stale(root, set(build.files) | {job.path for job in build.audio})

    summary = SampleSummary(
        root=root,
        tracks=tracks,
        genres={label: n for label, n in genre_counts(tracks).items() if label is not None},
        written=written,
        unchanged=total - written,
        defects=build.defects,
    )
    logger.info(
        "sample catalogue at %s: %d tracks, %d genres, %d files written, %d unchanged, %d defects",
        root,
        tracks,
        len(summary.genres),
        written,
        summary.unchanged,
        len(build.defects),
    )
    return summary


def _claim(root: Path) -> None:
    marker = root / MARKER_NAME
    if root.exists() and any(root.iterdir()) and not marker.exists():
        raise FileExistsError(
            f"{root} already exists and was not made by build_sample (no {MARKER_NAME} file). "
            f"Pick another output folder; this one may hold a real MERGE release."
        )
    root.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        _write_manifest(root, {})


def _remove_stale(root: Path, keep: set[Path]) -> None:
    stale = [
        path
        for kind, suffix in (("audio", ".mp3"), ("lyrics", ".txt"), (".", ".mp3"))
        for quadrant in metadata.QUADRANTS
        for path in (root / kind / quadrant).glob("*")
        if path.is_file()
        and path not in keep
        and (path.suffix == suffix or path.name.endswith(".tmp"))
    ]
    for path in stale:
        path.unlink()
    if stale:
        logger.info("removed %d files left by an earlier build", len(stale))


# --------------------------------------------------------------------------------------------
# Deliberate defects
# --------------------------------------------------------------------------------------------

_LATIN1_LYRICS = (
    "No café da esquina eu deixei o meu coração\n"
    "Canção de saudade, ação e emoção\n"
    "Señor, à bientôt, façade, naïve\n"
)


def _add_defects(build: _Build, tracks: int) -> None:
    rows = {key: _defect_row(key, tracks + n) for n, key in enumerate(DEFECT_IDS)}
    build.defects += [
        _empty_audio(build, rows["empty_audio"]),
        _corrupt_audio(
            build, rows["corrupt_audio"], seeding.rng(build.seed, seeding.STREAM_DEFECT)
        ),
        _latin1_lyrics(build, rows["latin1_lyrics"]),
        _row_without_files(build, rows["missing_files"]),
        _files_without_row(build, rows["orphan_files"]),
        _path_traversal_row(build, rows["path_traversal"]),
    ]


def _defect_row(key: str, index: int) -> metadata.Row:
    audio_id = DEFECT_IDS[key]
    # The traversal row still needs a sane, unique lyric and AllMusic ID of its own.
    other_id = audio_id if audio_id.startswith("MT") else _TRAVERSAL_LYRIC_ID
    quadrant = metadata.QUADRANTS[index % len(metadata.QUADRANTS)]
    return metadata.Row(index, audio_id, other_id, other_id, quadrant, _DEFECT_LABEL)


def _empty_audio(build: _Build, row: metadata.Row) -> str:
    build.rows.append(metadata.metadata(row, build.seed))
    build.files[build.audio_path(row.quadrant, row.audio_id)] = b""
    build.add_lyrics(row)
    return f"zero-byte audio: {build.relative(row, 'audio')} (row present, lyrics fine)"


def _corrupt_audio(build: _Build, row: metadata.Row, rng: np.random.Generator) -> str:
    build.rows.append(metadata.metadata(row, build.seed))
    build.files[build.audio_path(row.quadrant, row.audio_id)] = rng.bytes(4096)
    build.add_lyrics(row)
    return f"random bytes named .mp3: {build.relative(row, 'audio')} (row present, not audio)"


def _latin1_lyrics(build: _Build, row: metadata.Row) -> str:
    build.rows.append(metadata.metadata(row, build.seed))
    build.add_audio(row)
    build.files[build.lyrics_path(row.quadrant, row.lyric_id)] = _LATIN1_LYRICS.encode("latin-1")
    return f"Latin-1 lyrics: {build.relative(row, 'lyrics')} is not UTF-8 (row present, audio fine)"


def _row_without_files(build: _Build, row: metadata.Row) -> str:
    build.rows.append(metadata.metadata(row, build.seed))
    return f"row without files: {row.audio_id} has no audio and no lyrics"


def _files_without_row(build: _Build, row: metadata.Row) -> str:
    build.add_track(row, with_row=False)
    return (
        f"files without a row: {build.relative(row, 'audio')} and "
        f"{build.relative(row, 'lyrics')} are not in the metadata"
    )


def _path_traversal_row(build: _Build, row: metadata.Row) -> str:
    build.rows.append(metadata.metadata(row, build.seed))
    return f"path-traversal ID: a row with Audio_Song {row.audio_id!r} (no files)"


__all__ = [
    "DEFECT_IDS",
    "MARKER_NAME",
    "LAYOUTS",
    "METADATA_NAME",
    "ROOT_NAME",
    "SampleSummary",
    "build_sample",
]
