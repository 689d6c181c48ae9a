"""A real recorded-music catalogue in MERGE's audio-only layout, built from Debian game soundtracks.

A synthetic catalogue cannot show that the model hears real music. This builds one that can,
reproducibly, from free-software game soundtracks in Debian's archive at PINNED versions:

    python -m benchmarks.realaudio --out DIR [--cache benchmarks/.cache/realaudio]
                                   [--windows 3] [--window-seconds 30]

writes

    DIR/MERGE_Audio_Complete/Q1..Q4/<Song>.mp3               30 s windows, 22050 Hz mono MP3
    DIR/MERGE_Audio_Complete/merge_audio_complete_metadata.csv
    DIR/LICENSES.md                                          per package: version, licences
    DIR/licenses/<package>.copyright                         the package's copyright file, verbatim
    DIR/manifest.json                                        every window: where it came from

Each package is fetched with `apt-get download <name>=<version>` and unpacked with `dpkg -x` into
the cache (nothing is installed). From the music folders chosen per package (`MUSIC_FOLDERS`),
every track of at least 40 s gives up to `--windows` non-overlapping windows spread evenly over it
(5 s kept clear at both ends). Song ids are `A<track>-<window>` (`A0007-02`: track 7, window 2),
so results can be reported per window or, through the `Track` column, one row per track.

The set has NO emotion labels: every song sits in Q1, a placeholder the MERGE reader needs. The
label it does have is the source collection (`Genres`, e.g. `SuperTux`).

Same packages -> byte-identical output: files are visited in sorted order, windows are cut on a
fixed sample grid, the MP3 encoder runs with fixed settings and nothing records a time or a path
outside the output and the packages.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import soundfile as sf
import torch
import torchaudio

log = logging.getLogger("benchmarks.realaudio")

# The Candidate versions `apt-cache policy` showed when this set was defined (Debian bookworm).
# `apt-get download name=version` fails loudly when the archive no longer has exactly these.
PACKAGES = {
    "ufoai-music": "2.5-2",
    "supertux-data": "0.6.3-2",
    "hedgewars-data": "1.0.2-6",
    "freedroidrpg-data": "1.0-1",
    "colobot-common-sounds": "0.2.0-2",
    "hyperrogue-music": "12.0q-1",
    "asc-music": "1.3-6",
}

# The source collection label, written to `Genres`. The evaluation cuts the first genre at '/',
# so a label holds neither ',' nor '/'.
LABELS = {
    "ufoai-music": "UFO-AI",
    "supertux-data": "SuperTux",
    "hedgewars-data": "Hedgewars",
    "freedroidrpg-data": "FreedroidRPG",
    "colobot-common-sounds": "Colobot",
    "hyperrogue-music": "HyperRogue",
    "asc-music": "ASC",
}


@dataclass(frozen=True)
class MusicFolders:
    """Where a package keeps its music, and why those folders (and not the others) were chosen.

    `paths` are relative to the unpacked package; `archive.pk3!folder` names a folder inside a zip
    archive. `upstream` is the same folder's path in the upstream source tree, which is what the
    DEP-5 `Files:` patterns of the copyright file name (None: not known, only `Files: *` applies).
    `credits` is a file in the package that names the composer of each track (`file=composer`).
    """

    paths: tuple[str, ...]
    upstream: str | None
    why: str
    credits: str | None = None


# Chosen by looking inside each package (`dpkg -x`, then listing every audio file by folder).
MUSIC_FOLDERS = {
    "ufoai-music": MusicFolders(
        ("usr/share/games/ufoai/base/0music.pk3!music",),
        "base/music",
        "The package holds a single zip archive, base/0music.pk3; its music/ folder is the game's "
        "soundtrack (OGG Vorbis) and nothing else is audio.",
    ),
    "supertux-data": MusicFolders(
        ("usr/share/games/supertux2/music",),
        "data/music",
        "music/<world>/*.ogg are the level and menu soundtracks. sounds/ (effects) and speech/ "
        "(voice lines) are left out; the *.music files beside the OGGs are text loop descriptors.",
    ),
    "hedgewars-data": MusicFolders(
        ("usr/share/games/hedgewars/Data/Music",),
        "share/hedgewars/Data/Music",
        "Data/Music holds the theme soundtracks. Data/Sounds (effects) and Data/Sounds/voices "
        "(voice packs) are left out.",
        credits="usr/share/games/hedgewars/Data/Music/credits.txt",
    ),
    "freedroidrpg-data": MusicFolders(
        ("usr/share/freedroidrpg/data/sound/music",),
        "data/sound/music",
        "data/sound/music is the in-game soundtrack. data/sound/effects (effects, bot and voice "
        "samples) and the title-screen cues under base/titles and storyline/*/titles are left "
        "out.",
    ),
    "colobot-common-sounds": MusicFolders(
        ("usr/share/games/colobot/music",),
        "music",
        "The package is mostly sound effects (sounds/, 83 files); music/ holds the soundtrack.",
    ),
    "hyperrogue-music": MusicFolders(
        ("usr/share/hyperrogue/music",),
        "music",
        "music/ holds the land themes; sounds/ (effects) is left out.",
    ),
    "asc-music": MusicFolders(
        ("usr/share/games/asc/music",),
        "music",
        "music/ is the whole package: three MP3 tracks.",
    ),
}

SUBSET_FOLDER = "MERGE_Audio_Complete"
METADATA_NAME = "merge_audio_complete_metadata.csv"
METADATA_COLUMNS = ["Song", "Quadrant", "Artist", "Title", "Genres", "Duration", "Track"]
PLACEHOLDER_QUADRANT = "Q1"
QUADRANT_NOTE = (
    "Quadrant is a PLACEHOLDER, not an emotion label: this set has no emotion annotations, and "
    "every song is filed under Q1 only because the MERGE layout needs a quadrant. Q2..Q4 are empty."
)

SAMPLE_RATE = 22050
MARGIN_S = 5.0
MIN_TRACK_S = 40.0
MIN_TRACKS = 5
# Gentle peak limit: a window is scaled down only when its peak exceeds -1 dBFS (the headroom
# usually kept for lossy encoding); every other window keeps its level.
PEAK_LIMIT = 10 ** (-1 / 20)
# Fixed encoder settings: libsndfile's LAME, variable bitrate at quality 0.3 (about 60 kbit/s
# for 22050 Hz mono).
MP3_SETTINGS = {"bitrate_mode": "VARIABLE", "compression_level": 0.3}
# Resampling context either side of a window, in output samples; filter edges never touch it.
RESAMPLE_CONTEXT = SAMPLE_RATE

DECODABLE = (".ogg", ".mp3", ".flac", ".wav")
TRACKER = (".it", ".xm", ".mod", ".s3m")
MUSIC_SUFFIXES = DECODABLE + TRACKER

# Skip reasons, as counted in the summary.
NOT_AUDIO = "not an audio file"
TRACKER_MODULE = "tracker module (soundfile cannot decode it)"
UNDECODABLE = "soundfile cannot decode it"
TOO_SHORT = f"shorter than {MIN_TRACK_S:g} s (sound effect or jingle)"
FEW_TRACKS = f"package left out: fewer than {MIN_TRACKS} usable tracks"


class RealAudioError(RuntimeError):
    """A package could not be fetched, or the output could not be written."""


# -- the pure parts --------------------------------------------------------------------------


def window_starts(
    duration_s: float,
    windows: int = 3,
    window_seconds: float = 30.0,
    margin_s: float = MARGIN_S,
    min_track_s: float = MIN_TRACK_S,
) -> list[float]:
    """Start times (s) of up to `windows` non-overlapping windows spread evenly over a track.

    The first and last `margin_s` seconds are never used. The usable span is cut into as many
    equal parts as windows fit (at most `windows`), and each window is centred in its part, so a
    short track gets fewer windows and a track shorter than `min_track_s` gets none. Starts are
    rounded to the millisecond.
    """
    if windows < 1 or window_seconds <= 0 or duration_s < min_track_s:
        return []
    span = duration_s - 2 * margin_s
    n = min(windows, math.floor(span / window_seconds + 1e-9))
    if n < 1:
        return []
    part = span / n
    return [round(margin_s + part * i + (part - window_seconds) / 2, 3) for i in range(n)]


def song_id(track_no: int, window_no: int) -> str:
    """`A0007-02`: window 2 of track 7, a shape `musicvae.ingest.merge.AUDIO_ID` accepts."""
    if not 1 <= track_no <= 9999 or not 1 <= window_no <= 99:
        raise ValueError(f"track {track_no} / window {window_no} do not fit the A####-## shape")
    return f"{track_id(track_no)}-{window_no:02d}"


def track_id(track_no: int) -> str:
    return f"A{track_no:04d}"


def collection_label(package: str) -> str:
    """The source collection label (`supertux-data` -> `SuperTux`): no ',' and no '/'."""
    label = LABELS.get(package)
    if label is None:
        stem = re.sub(r"-(data|music|common-sounds|sounds)$", "", package)
        label = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", stem) if part)
    return label.replace(",", " ").replace("/", "-")


@dataclass(frozen=True)
class TrackSource:
    """One music file taken from a package, already on disk.

    `source` is its path inside the package (`a.pk3!music/x.ogg` for an archive member), `path`
    where it lies now. `artist` and `license` come from the package's own documentation.
    """

    package: str
    source: str
    path: Path
    version: str = ""
    artist: str | None = None
    license: str | None = None


@dataclass(frozen=True)
class Skip:
    package: str
    source: str
    reason: str


@dataclass
class PackageInfo:
    """What LICENSES.md and the summary say about a package."""

    name: str
    version: str
    label: str
    maintainer: str | None = None
    source_url: str | None = None
    copyright: Path | None = None
    folders: MusicFolders | None = None
    other_audio: int = 0  # audio files outside the chosen music folders, never considered
    extra: dict = field(default_factory=dict)


# -- DEP-5 copyright files -------------------------------------------------------------------


def parse_paragraphs(text: str) -> list[dict[str, str]]:
    """Paragraphs of a deb822 file; continuation lines are kept, joined with newlines."""
    paragraphs: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                paragraphs.append(current)
            current, key = {}, None
        elif line[0] in " \t" and key is not None:
            current[key] += "\n" + line.strip()
        elif ":" in line and not line.startswith("#"):
            key, _, value = line.partition(":")
            key = key.strip()
            current[key] = value.strip()
    if current:
        paragraphs.append(current)
    return paragraphs


def is_machine_readable(text: str) -> bool:
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    return first.startswith("Format:") and "copyright-format" in first


def _dep5_regex(pattern: str) -> re.Pattern:
    # DEP-5: '*' matches any run of characters including '/', '?' exactly one; nothing else.
    body = "".join(
        ".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern.strip("/")
    )
    return re.compile(f"^{body}$", re.DOTALL)


def license_for(paragraphs: list[dict[str, str]], upstream_path: str) -> dict | None:
    """The `Files:` paragraph that governs a file (the last matching one, as DEP-5 says)."""
    found = None
    for para in paragraphs:
        if "Files" not in para:
            continue
        patterns = para["Files"].split()
        if any(_dep5_regex(p).match(upstream_path) for p in patterns):
            found = para
    if found is None:
        return None
    return {
        "license": found.get("License", "").splitlines()[0].strip() if found.get("License") else "",
        "copyright": [c for c in found.get("Copyright", "").splitlines() if c.strip()],
        "files": found["Files"].split(),
    }


def clean_holder(holder: str) -> str:
    """`2004-2018 Someone <a@b> (http://x)` -> `Someone`."""
    name = re.sub(r"^[\d\s,\-–]+(?=\D)", "", holder.strip())
    name = re.split(r"\s+(?:<|\(|-\s)", name)[0]
    return name.strip().strip('"').strip()


def composer_from_license(match: dict | None) -> str | None:
    """The composer when the copyright file names exactly one holder for this very file."""
    if not match or any("*" in f or "?" in f for f in match["files"]):
        return None
    holders = [clean_holder(c) for c in match["copyright"]]
    holders = [h for h in holders if h]
    return holders[0] if len(holders) == 1 else None


def read_credits(path: Path) -> dict[str, str]:
    """`file.ogg=Composer <url>` lines -> {file stem: composer}."""
    credits = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            name, sep, who = line.partition("=")
            if sep and who.strip():
                credits[PurePosixPath(name.strip()).stem.lower()] = clean_holder(who)
    return credits


# -- fetching --------------------------------------------------------------------------------


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise RealAudioError(f"{cmd[0]} is not available: {e}") from e
    if done.returncode != 0:
        raise RealAudioError(
            f"`{' '.join(cmd)}` failed (exit {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()}"
        )
    return done


def fetch_package(package: str, version: str, cache: Path) -> Path:
    """Download and unpack `package=version` under `cache/package`; reuse it when the stamp matches.

    Layout: `root/` (what `dpkg -x` unpacked), `unpacked/<archive>/` (zip archives named in
    `MUSIC_FOLDERS`), `stamp.json` (package, version and control fields; written last).
    """
    dest = cache / package
    stamp = dest / "stamp.json"
    if stamp.is_file() and (dest / "root").is_dir():
        try:
            seen = json.loads(stamp.read_text())
        except ValueError:
            seen = {}
        if seen.get("package") == package and seen.get("version") == version:
            log.info("%s %s: cached in %s", package, version, dest)
            return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    log.info("%s %s: apt-get download", package, version)
    try:
        _run(["apt-get", "download", f"{package}={version}"], cwd=dest)
    except RealAudioError as e:
        raise RealAudioError(
            f"{package}={version} could not be downloaded ({e}). If apt cannot find it, run "
            "`apt-get update` once; if the archive has moved on, the pinned set no longer exists "
            "there and PACKAGES must be re-pinned deliberately."
        ) from e
    debs = sorted(dest.glob("*.deb"))
    if len(debs) != 1:
        raise RealAudioError(f"{package}: expected one .deb in {dest}, found {len(debs)}")
    fields = {}
    for name in ("Package", "Version", "Maintainer", "Architecture", "Homepage"):
        done = subprocess.run(
            ["dpkg-deb", "-f", str(debs[0]), name], capture_output=True, text=True
        )
        fields[name.lower()] = done.stdout.strip() if done.returncode == 0 else None
    if fields["package"] != package or fields["version"] != version:
        raise RealAudioError(
            f"{debs[0].name} is {fields['package']} {fields['version']}, not {package} {version}"
        )
    _run(["dpkg", "-x", str(debs[0]), str(dest / "root")])
    for folder in MUSIC_FOLDERS.get(package, MusicFolders((), None, "")).paths:
        archive, sep, _ = folder.partition("!")
        if sep:
            target = dest / "unpacked" / archive
            target.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(dest / "root" / archive) as zf:
                zf.extractall(target)  # zipfile drops '..' and absolute parts of member names
    debs[0].unlink()
    stamp.write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")
    return dest


def _folder_on_disk(pkg_dir: Path, folder: str) -> Path:
    archive, sep, inner = folder.partition("!")
    return pkg_dir / "unpacked" / archive / inner if sep else pkg_dir / "root" / folder


def _suffix(path: str) -> str:
    return PurePosixPath(path).suffix.lower()


def discover(
    package: str, version: str, pkg_dir: Path
) -> tuple[list[TrackSource], list[Skip], PackageInfo]:
    """An unpacked package's candidate music files, and the other files in its music folders."""
    folders = MUSIC_FOLDERS[package]
    root = pkg_dir / "root"
    stamp = json.loads((pkg_dir / "stamp.json").read_text())
    copyright_path = root / "usr/share/doc" / package / "copyright"
    text = (
        copyright_path.read_text(encoding="utf-8", errors="replace")
        if copyright_path.is_file()
        else ""
    )
    paragraphs = parse_paragraphs(text) if is_machine_readable(text) else []
    header = paragraphs[0] if paragraphs and "Files" not in paragraphs[0] else {}
    info = PackageInfo(
        name=package,
        version=version,
        label=collection_label(package),
        maintainer=stamp.get("maintainer"),
        source_url=header.get("Source") or stamp.get("homepage"),
        copyright=copyright_path if copyright_path.is_file() else None,
        folders=folders,
    )
    credits = read_credits(root / folders.credits) if folders.credits else {}

    tracks: list[TrackSource] = []
    skips: list[Skip] = []
    chosen: set[Path] = set()
    for folder in folders.paths:
        base = _folder_on_disk(pkg_dir, folder)
        if not base.is_dir():
            raise RealAudioError(f"{package}: music folder {folder!r} is not in the package")
        for path in sorted(p for p in base.rglob("*") if p.is_file() and not p.is_symlink()):
            chosen.add(path.resolve())
            rel = path.relative_to(base).as_posix()
            source = f"{folder}/{rel}"
            suffix = _suffix(rel)
            if suffix in TRACKER:
                skips.append(Skip(package, source, TRACKER_MODULE))
                continue
            if suffix not in DECODABLE:
                skips.append(Skip(package, source, NOT_AUDIO))
                continue
            upstream = f"{folders.upstream}/{rel}" if folders.upstream else rel
            match = license_for(paragraphs, upstream) if paragraphs else None
            artist = credits.get(PurePosixPath(rel).stem.lower()) or composer_from_license(match)
            tracks.append(
                TrackSource(
                    package=package,
                    source=source,
                    path=path,
                    version=version,
                    artist=artist,
                    license=match["license"] if match else None,
                )
            )
    info.other_audio = sum(
        1
        for p in root.rglob("*")
        if p.is_file() and _suffix(p.name) in MUSIC_SUFFIXES and p.resolve() not in chosen
    )
    return tracks, skips, info


# -- writing the catalogue -------------------------------------------------------------------


def _read_window(snd: sf.SoundFile, start_s: float, window_seconds: float) -> np.ndarray:
    """`window_seconds` of mono audio at SAMPLE_RATE from `start_s`, on a fixed sample grid."""
    sr = snd.samplerate
    n_out = int(round(window_seconds * SAMPLE_RATE))
    t0 = int(round(start_s * SAMPLE_RATE))  # first output sample, in output samples
    g = math.gcd(sr, SAMPLE_RATE)
    step = SAMPLE_RATE // g  # output offsets that land on a whole input sample
    a_out = max(0, (t0 - RESAMPLE_CONTEXT) // step * step)
    a_in = a_out * sr // SAMPLE_RATE
    b_in = min(snd.frames, math.ceil((t0 + n_out + RESAMPLE_CONTEXT) * sr / SAMPLE_RATE))
    snd.seek(a_in)
    chunk = snd.read(b_in - a_in, dtype="float32", always_2d=True)
    mono = chunk.mean(axis=1, dtype=np.float32)
    if sr != SAMPLE_RATE:
        mono = torchaudio.functional.resample(torch.from_numpy(mono), sr, SAMPLE_RATE).numpy()
    out = mono[t0 - a_out : t0 - a_out + n_out]
    if len(out) < n_out:  # an MP3 whose frame count was an estimate: pad the last few samples
        out = np.pad(out, (0, n_out - len(out)))
    return np.ascontiguousarray(out, dtype=np.float32)


def _limit(wave: np.ndarray) -> tuple[np.ndarray, float]:
    peak = float(np.max(np.abs(wave))) if len(wave) else 0.0
    if peak <= PEAK_LIMIT:
        return wave, 1.0
    gain = PEAK_LIMIT / peak
    return (wave * np.float32(gain)).astype(np.float32), round(gain, 4)


def _encode_mp3(wave: np.ndarray) -> bytes:
    buf = io.BytesIO()
    # In blocks of a second: libsndfile's encoders are safest fed moderate writes.
    with sf.SoundFile(buf, "w", SAMPLE_RATE, 1, format="MP3", **MP3_SETTINGS) as fh:
        for i in range(0, len(wave), SAMPLE_RATE):
            fh.write(wave[i : i + SAMPLE_RATE])
    return buf.getvalue()


def _probe(track: TrackSource) -> tuple[float | None, str | None]:
    try:
        info = sf.info(str(track.path))
    except Exception as e:  # libsndfile reports unreadable input through several exception types
        # The reason stays free of local paths (the output must not depend on the cache folder).
        log.warning("%s %s: soundfile cannot decode it: %s", track.package, track.source, e)
        return None, UNDECODABLE
    if info.frames <= 0 or info.samplerate <= 0:
        return None, f"{UNDECODABLE} (no samples)"
    return info.frames / info.samplerate, None


def _clear(out: Path) -> None:
    """Remove what an earlier build wrote here (and nothing else)."""
    for name in (SUBSET_FOLDER, "licenses"):
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    for name in ("manifest.json", "LICENSES.md"):
        (out / name).unlink(missing_ok=True)


def write_catalogue(
    tracks: Iterable[TrackSource],
    out: Path | str,
    *,
    windows: int = 3,
    window_seconds: float = 30.0,
    margin_s: float = MARGIN_S,
    min_track_s: float = MIN_TRACK_S,
    min_tracks: int = MIN_TRACKS,
    skipped: Iterable[Skip] = (),
    packages: Mapping[str, PackageInfo] | None = None,
) -> dict:
    """Cut, encode and file the windows of already-unpacked tracks; return the summary.

    Tracks are numbered from 1 across packages, in (package, source) order, counting only the
    tracks that are used. A package with fewer than `min_tracks` usable tracks is left out.
    """
    out = Path(out)
    tracks = sorted(tracks, key=lambda t: (t.package, t.source))
    packages = dict(packages or {})
    for t in tracks:
        packages.setdefault(
            t.package, PackageInfo(t.package, t.version, collection_label(t.package))
        )
    skips = sorted(skipped, key=lambda s: (s.package, s.source))

    probed: dict[str, list[tuple[TrackSource, float]]] = {name: [] for name in packages}
    for t in tracks:
        duration, problem = _probe(t)
        if problem:
            skips.append(Skip(t.package, t.source, problem))
        elif not window_starts(duration, windows, window_seconds, margin_s, min_track_s):
            skips.append(
                Skip(
                    t.package,
                    t.source,
                    TOO_SHORT
                    if duration < min_track_s
                    else f"too short for one {window_seconds:g} s window",
                )
            )
        else:
            probed[t.package].append((t, duration))
    left_out = {}
    for name, usable in probed.items():
        if len(usable) < min_tracks:
            left_out[name] = f"{len(usable)} usable music track(s), fewer than {min_tracks}"
            skips.extend(Skip(name, t.source, FEW_TRACKS) for t, _ in usable)
            usable.clear()

    _clear(out)
    subset = out / SUBSET_FOLDER
    for q in ("Q1", "Q2", "Q3", "Q4"):
        (subset / q).mkdir(parents=True, exist_ok=True)

    rows: list[dict] = []
    manifest_windows: list[dict] = []
    manifest_tracks: list[dict] = []
    stats = {name: Counter() for name in packages}
    track_no = 0
    for name in sorted(probed):
        for t, duration in probed[name]:
            track_no += 1
            tid = track_id(track_no)
            starts = window_starts(duration, windows, window_seconds, margin_s, min_track_s)
            artist = t.artist or t.package
            title = PurePosixPath(t.source).stem
            with sf.SoundFile(str(t.path)) as snd:
                source_rate = snd.samplerate
                for w, start in enumerate(starts, 1):
                    sid = song_id(track_no, w)
                    wave, gain = _limit(_read_window(snd, start, window_seconds))
                    (subset / PLACEHOLDER_QUADRANT / f"{sid}.mp3").write_bytes(_encode_mp3(wave))
                    rows.append(
                        {
                            "Song": sid,
                            "Quadrant": PLACEHOLDER_QUADRANT,
                            "Artist": artist,
                            "Title": title,
                            "Genres": packages[name].label,
                            "Duration": str(int(round(duration))),
                            "Track": tid,
                        }
                    )
                    manifest_windows.append(
                        {
                            "song": sid,
                            "track": tid,
                            "window": w,
                            "package": t.package,
                            "source": t.source,
                            "start_s": start,
                            "seconds": window_seconds,
                            "gain": gain,
                        }
                    )
            manifest_tracks.append(
                {
                    "track": tid,
                    "package": t.package,
                    "version": packages[name].version,
                    "source": t.source,
                    "title": title,
                    "artist": artist,
                    "license": t.license,
                    "duration_s": round(duration, 3),
                    "source_sample_rate": source_rate,
                    "windows": len(starts),
                }
            )
            stats[name]["tracks"] += 1
            stats[name]["windows"] += len(starts)
            stats[name]["track_seconds"] += duration
        if probed[name]:
            log.info(
                "%s: %d tracks, %d windows, %.1f min of music",
                name,
                stats[name]["tracks"],
                stats[name]["windows"],
                stats[name]["track_seconds"] / 60,
            )

    with open(subset / METADATA_NAME, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=METADATA_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)

    summary = _summary(packages, stats, skips, left_out, windows, window_seconds)
    manifest = {
        "description": "Real recorded music from Debian game-soundtrack packages, in MERGE's "
        "audio-only layout; see LICENSES.md for the licence of every package.",
        "quadrant": QUADRANT_NOTE,
        "genres": "Genres holds the source collection (one label per package), not a genre.",
        "parameters": {
            "windows_per_track": windows,
            "window_seconds": window_seconds,
            "margin_seconds": margin_s,
            "min_track_seconds": min_track_s,
            "min_tracks_per_package": min_tracks,
            "sample_rate": SAMPLE_RATE,
            "channels": 1,
            "mp3": MP3_SETTINGS,
            "peak_limit_dbfs": -1.0,
        },
        "packages": {
            name: {
                "version": info.version,
                "label": info.label,
                "used": name not in left_out and stats[name]["tracks"] > 0,
                "left_out": left_out.get(name),
                "music_folders": list(info.folders.paths) if info.folders else None,
                "why_these_folders": info.folders.why if info.folders else None,
            }
            for name, info in sorted(packages.items())
        },
        "tracks": manifest_tracks,
        "windows": manifest_windows,
        "skipped": [
            {"package": s.package, "source": s.source, "reason": s.reason}
            for s in sorted(skips, key=lambda s: (s.package, s.source))
        ],
        "summary": summary,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    _write_licenses(out, packages, summary, probed)
    return summary


def _summary(packages, stats, skips, left_out, windows, window_seconds) -> dict:
    per = {}
    for name, info in sorted(packages.items()):
        reasons = Counter(s.reason for s in skips if s.package == name)
        per[name] = {
            "version": info.version,
            "label": info.label,
            "used": name not in left_out and stats[name]["tracks"] > 0,
            "left_out": left_out.get(name),
            "tracks": stats[name]["tracks"],
            "windows": stats[name]["windows"],
            "track_minutes": round(stats[name]["track_seconds"] / 60, 1),
            "window_minutes": round(stats[name]["windows"] * window_seconds / 60, 1),
            "skipped": dict(sorted(reasons.items())),
            "audio_outside_music_folders": info.other_audio,
        }
    totals = {
        "packages_used": sum(1 for p in per.values() if p["used"]),
        "packages_left_out": sorted(n for n, p in per.items() if not p["used"]),
        "tracks": sum(p["tracks"] for p in per.values()),
        "windows": sum(p["windows"] for p in per.values()),
        "track_minutes": round(sum(s["track_seconds"] for s in stats.values()) / 60, 1),
        "window_minutes": round(sum(p["windows"] for p in per.values()) * window_seconds / 60, 1),
        "skipped": dict(sorted(Counter(s.reason for s in skips).items())),
    }
    return {"packages": per, "totals": totals}


def _license_lines(text: str) -> list[str]:
    """Each `Files:` paragraph's patterns (abridged) and licence, then stand-alone licences."""
    lines = []
    for para in parse_paragraphs(text):
        if "License" not in para:
            continue
        licence = para["License"].splitlines()[0].strip()
        if "Files" in para:
            files = para["Files"].split()
            shown = " ".join(files[:4]) + (f" … (+{len(files) - 4} more)" if len(files) > 4 else "")
            lines.append(f"- `Files: {shown}` → **License: {licence}**")
        else:
            lines.append(f"- License text included in the file: {licence}")
    return lines


def _write_licenses(out: Path, packages: Mapping[str, PackageInfo], summary: dict, probed) -> None:
    (out / "licenses").mkdir(exist_ok=True)
    md = [
        "# Licences of the real-audio benchmark set",
        "",
        "Every window in `MERGE_Audio_Complete/` is cut from a track of one of the Debian packages "
        "below (free-software game soundtracks). `manifest.json` names, for every window, the "
        "package, the file inside it and the start time, and for every track the licence that "
        "the package's DEP-5 copyright file assigns to it (`null` where the file is not "
        "machine-readable). The package's copyright file is copied verbatim to "
        "`licenses/<package>.copyright`; it is the authoritative statement of copyright, "
        "licence and attribution.",
        "",
        f"{QUADRANT_NOTE}",
        "",
    ]
    for name, info in sorted(packages.items()):
        s = summary["packages"][name]
        md += [f"## {info.label}: `{name}` {info.version}", ""]
        if s["used"]:
            md.append(
                f"- Used: {s['tracks']} tracks, {s['windows']} windows "
                f"({s['track_minutes']} min of source music)."
            )
        else:
            md.append(f"- **Left out** of the set: {s['left_out'] or 'no usable music tracks'}.")
        if info.maintainer:
            md.append(f"- Debian maintainer: {info.maintainer}")
        if info.source_url:
            md.append(f"- Upstream source: {info.source_url}")
        if info.folders:
            md.append(
                f"- Music folders: {', '.join(f'`{p}`' for p in info.folders.paths)}. "
                f"{info.folders.why}"
            )
        used = [t for t, _ in probed.get(name, [])]
        by_licence = Counter(t.license or "unknown" for t in used)
        if by_licence:
            md.append(
                "- Licence of the tracks used (from the copyright file's `Files:` paragraphs): "
                + ", ".join(f"{lic} ({n})" for lic, n in sorted(by_licence.items()))
            )
        if info.copyright and info.copyright.is_file():
            data = info.copyright.read_bytes()
            (out / "licenses" / f"{name}.copyright").write_bytes(data)
            text = data.decode("utf-8", errors="replace")
            md.append(
                f"- Copyright file: `licenses/{name}.copyright` (from "
                f"`usr/share/doc/{name}/copyright` in the package)"
            )
            md.append("")
            if is_machine_readable(text):
                md.append("`License:` lines of the copyright file (machine-readable, DEP-5):")
                md.append("")
                md += _license_lines(text)
            else:
                md.append("The copyright file is free-form; its first 40 lines:")
                md += ["", "```", *text.splitlines()[:40], "```"]
        else:
            md.append("- No copyright file was found for this package.")
        md.append("")
    (out / "LICENSES.md").write_text("\n".join(md).rstrip("\n") + "\n", encoding="utf-8")


# -- the whole build -------------------------------------------------------------------------


def build_realaudio(
    out: Path | str,
    cache: Path | str = Path("benchmarks/.cache/realaudio"),
    windows: int = 3,
    window_seconds: float = 30.0,
) -> dict:
    """Fetch the pinned packages, pick their music and write the catalogue; return the summary."""
    out, cache = Path(out), Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    # The cache holds about 1.2 GB of unpacked packages: keep it out of git wherever it lies.
    if not (cache / ".gitignore").exists():
        (cache / ".gitignore").write_text("*\n")
    out.mkdir(parents=True, exist_ok=True)
    tracks: list[TrackSource] = []
    skips: list[Skip] = []
    infos: dict[str, PackageInfo] = {}
    for package, version in sorted(PACKAGES.items()):
        pkg_dir = fetch_package(package, version, cache)
        found, passed, info = discover(package, version, pkg_dir)
        log.info(
            "%s %s: %d candidate music files, %d other files in its music folders, "
            "%d audio files elsewhere in the package (not considered)",
            package,
            version,
            len(found),
            len(passed),
            info.other_audio,
        )
        tracks += found
        skips += passed
        infos[package] = info
    return write_catalogue(
        tracks,
        out,
        windows=windows,
        window_seconds=window_seconds,
        skipped=skips,
        packages=infos,
    )


def format_summary(summary: dict) -> str:
    lines = [
        f"{'package':<23} {'version':<9} {'label':<13} {'tracks':>6} {'windows':>7} "
        f"{'minutes':>7}  skipped"
    ]
    for name, p in summary["packages"].items():
        skipped = "; ".join(f"{n} {reason}" for reason, n in p["skipped"].items()) or "-"
        if p["left_out"]:
            skipped = f"LEFT OUT ({p['left_out']}); " + skipped
        lines.append(
            f"{name:<23} {p['version']:<9} {p['label']:<13} {p['tracks']:>6} {p['windows']:>7} "
            f"{p['track_minutes']:>7}  {skipped}"
        )
    t = summary["totals"]
    lines.append(
        f"{'TOTAL':<23} {'':<9} {str(t['packages_used']) + ' used':<13} {t['tracks']:>6} "
        f"{t['windows']:>7} {t['track_minutes']:>7}  "
        f"({t['window_minutes']} min in windows)"
    )
    if t["packages_left_out"]:
        lines.append(f"left out: {', '.join(t['packages_left_out'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.realaudio",
        description="Build a real-audio MERGE-layout catalogue from Debian game soundtracks.",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--cache", default="benchmarks/.cache/realaudio", help="download cache")
    p.add_argument("--windows", type=int, default=3, help="windows per track (default 3)")
    p.add_argument("--window-seconds", type=float, default=30.0, help="window length (s)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    started = time.monotonic()
    try:
        summary = build_realaudio(args.out, args.cache, args.windows, args.window_seconds)
    except RealAudioError as e:
        log.error("%s", e)
        return 1
    print(format_summary(summary))
    print(f"built {args.out} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
