"""The real-audio benchmark set's pure parts, on generated tracks: no network, no apt."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmarks.realaudio import (
    FEW_TRACKS,
    LABELS,
    NOT_AUDIO,
    PACKAGES,
    TOO_SHORT,
    UNDECODABLE,
    Skip,
    TrackSource,
    clean_holder,
    collection_label,
    composer_from_license,
    license_for,
    parse_paragraphs,
    song_id,
    window_starts,
    write_catalogue,
)
from musicvae.ingest.landing import Landing
from musicvae.ingest.merge import AUDIO_ID, genre_label


@pytest.mark.parametrize("duration", [40.0, 45.0, 64.9, 70.0, 100.0, 101.0, 180.0, 600.0])
@pytest.mark.parametrize("windows", [1, 3, 5])
def test_windows_do_not_overlap_and_stay_inside_the_margins(duration, windows):
    starts = window_starts(duration, windows, 30.0, 5.0)
    assert 1 <= len(starts) <= windows
    assert starts == sorted(starts)
    assert starts[0] >= 5.0 - 1e-9
    assert starts[-1] + 30.0 <= duration - 5.0 + 1e-9
    assert all(b - a >= 30.0 - 1e-9 for a, b in zip(starts, starts[1:], strict=False))


def test_short_tracks_get_fewer_windows_and_none_below_40_s():
    assert window_starts(39.99, 3, 30.0, 5.0) == []
    assert window_starts(10.0, 3, 30.0, 5.0) == []
    assert window_starts(40.0, 3, 30.0, 5.0) == [5.0]
    assert len(window_starts(69.9, 3, 30.0, 5.0)) == 1
    assert len(window_starts(70.0, 3, 30.0, 5.0)) == 2
    assert len(window_starts(100.0, 3, 30.0, 5.0)) == 3
    assert len(window_starts(1000.0, 3, 30.0, 5.0)) == 3
    assert window_starts(1000.0, 0, 30.0, 5.0) == []


def test_windows_spread_evenly_over_a_long_track():
    # 310 s: the 300 s between the margins splits into three 100 s parts, a window centred in each.
    assert window_starts(310.0, 3, 30.0, 5.0) == [40.0, 140.0, 240.0]


def test_song_ids_match_the_readers_audio_id_shape():
    assert song_id(7, 2) == "A0007-02"
    for track in (1, 42, 999, 9999):
        for window in (1, 3, 10, 99):
            assert AUDIO_ID.match(song_id(track, window))
    with pytest.raises(ValueError):
        song_id(10000, 1)
    with pytest.raises(ValueError):
        song_id(1, 0)


def test_collection_labels_survive_the_evaluations_genre_cut():
    assert collection_label("supertux-data") == "SuperTux"
    for package in PACKAGES:
        label = collection_label(package)
        assert label and "," not in label and "/" not in label
        assert genre_label(label) == label
    assert set(LABELS) == set(PACKAGES)
    assert "/" not in collection_label("some/odd,package-data")


COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: hyperrogue
Source: https://www.roguetemple.com/z/hyper/

Files: *
Copyright: 2011-2020 Zeno Rogue <zeno@attnam.com>
License: GPL-2+

Files: music/hr3-caves.ogg
       music/hr3-hell.ogg
Copyright: Shawn Parrotte (http://www.shawnparrotte.com)
License: CC-BY-SA-3.0

Files: music/group-*.ogg
Copyright: One
           Two
License: CC-BY-3.0

License: GPL-2+
 On Debian systems, see /usr/share/common-licenses/GPL-2.
"""


def test_the_last_matching_files_paragraph_gives_licence_and_composer():
    paragraphs = parse_paragraphs(COPYRIGHT)
    caves = license_for(paragraphs, "music/hr3-caves.ogg")
    assert caves["license"] == "CC-BY-SA-3.0"
    assert composer_from_license(caves) == "Shawn Parrotte"
    other = license_for(paragraphs, "music/else.ogg")
    assert other["license"] == "GPL-2+"
    assert composer_from_license(other) is None  # a '*' paragraph names no composer
    group = license_for(paragraphs, "music/group-a.ogg")
    assert group["license"] == "CC-BY-3.0"
    assert composer_from_license(group) is None  # two holders: no single composer
    assert clean_holder("2004-2018 Someone Else <a@b.c>") == "Someone Else"


# -- write_catalogue on generated tracks -----------------------------------------------------


def _tone(path: Path, seconds: float, sr: int, freq: float, channels: int, fmt: str) -> None:
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.4 * np.sin(2 * np.pi * freq * t) + 0.2 * np.sin(2 * np.pi * 3 * freq * t)
    # A loud burst: the window holding it must be scaled down, not clipped.
    wave[int(20 * sr) : int(21 * sr)] *= 2.5
    data = np.stack([wave] * channels, axis=1).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    # In blocks: libsndfile's Vorbis encoder crashes on one large write.
    with sf.SoundFile(str(path), "w", sr, channels, format=fmt) as fh:
        for i in range(0, len(data), sr):
            fh.write(data[i : i + sr])


@pytest.fixture(scope="module")
def fake_packages(tmp_path_factory):
    """Two fake packages: three music tracks (45-70 s), a jingle and a text file."""
    root = tmp_path_factory.mktemp("pkgs")
    specs = [
        ("alpha-music", "music/b_theme.ogg", 70.0, 44100, 330.0, 2, "OGG"),
        ("alpha-music", "music/a_intro.wav", 45.0, 48000, 220.0, 1, "WAV"),
        ("alpha-music", "music/jingle.ogg", 12.0, 44100, 440.0, 2, "OGG"),
        ("beta-data", "sound/music/level1.ogg", 55.0, 22050, 262.0, 2, "OGG"),
    ]
    tracks = []
    for package, rel, seconds, sr, freq, channels, fmt in specs:
        path = root / package / rel
        _tone(path, seconds, sr, freq, channels, fmt)
        tracks.append(TrackSource(package, rel, path, version="1.0-1", license="GPL-2+"))
    (root / "alpha-music/music/loop.music").write_text("(music)")
    skipped = [Skip("alpha-music", "music/loop.music", NOT_AUDIO)]
    return tracks, skipped


def _build(tracks, skipped, out):
    # Reversed input: the order the tracks arrive in must not matter.
    return write_catalogue(list(reversed(tracks)), out, min_tracks=1, skipped=skipped)


@pytest.fixture(scope="module")
def built(fake_packages, tmp_path_factory):
    tracks, skipped = fake_packages
    out = tmp_path_factory.mktemp("realaudio")
    summary = _build(tracks, skipped, out)
    return out, summary


def test_write_catalogue_produces_the_merge_audio_only_layout(built):
    out, summary = built
    subset = out / "MERGE_Audio_Complete"
    assert sorted(p.name for p in subset.iterdir()) == [
        "Q1",
        "Q2",
        "Q3",
        "Q4",
        "merge_audio_complete_metadata.csv",
    ]
    # alpha: a_intro (45 s -> 1 window) = A0001, b_theme (70 s -> 2) = A0002; beta: level1 (55 s).
    assert sorted(p.name for p in (subset / "Q1").iterdir()) == [
        "A0001-01.mp3",
        "A0002-01.mp3",
        "A0002-02.mp3",
        "A0003-01.mp3",
    ]
    for q in ("Q2", "Q3", "Q4"):
        assert list((subset / q).iterdir()) == []
    assert (out / "LICENSES.md").is_file() and (out / "manifest.json").is_file()

    with open(subset / "merge_audio_complete_metadata.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["Song", "Quadrant", "Artist", "Title", "Genres", "Duration", "Track"]
    assert [(r["Song"], r["Track"], r["Title"], r["Genres"]) for r in rows] == [
        ("A0001-01", "A0001", "a_intro", "Alpha"),
        ("A0002-01", "A0002", "b_theme", "Alpha"),
        ("A0002-02", "A0002", "b_theme", "Alpha"),
        ("A0003-01", "A0003", "level1", "Beta"),
    ]
    assert {r["Quadrant"] for r in rows} == {"Q1"}
    assert [r["Duration"] for r in rows] == ["45", "70", "70", "55"]
    assert rows[0]["Artist"] == "alpha-music"  # no composer known: the package name

    p = summary["packages"]
    assert (p["alpha-music"]["tracks"], p["alpha-music"]["windows"]) == (2, 3)
    assert (p["beta-data"]["tracks"], p["beta-data"]["windows"]) == (1, 1)
    assert p["alpha-music"]["skipped"] == {NOT_AUDIO: 1, TOO_SHORT: 1}
    assert summary["totals"]["windows"] == 4 and summary["totals"]["tracks"] == 3


def test_the_reader_accepts_every_row_and_pairs_it_with_its_mp3(built, scan):
    out, _ = built
    landing = Landing.open(str(out))
    [result] = scan(landing)
    entries = list(result.entries())
    assert result.subset == "audio_complete"
    assert result.rejections == []
    assert len(entries) == 4
    for entry in entries:
        assert entry.problems == []
        assert entry.audio_path == f"MERGE_Audio_Complete/Q1/{entry.song_id}.mp3"
        assert entry.metadata["Track"] == entry.song_id.split("-")[0]


def test_windows_decode_to_30_s_of_22050_hz_mono_without_clipping(built):
    out, _ = built
    for mp3 in sorted((out / "MERGE_Audio_Complete/Q1").glob("*.mp3")):
        wave, sr = sf.read(str(mp3), dtype="float32", always_2d=True)
        assert sr == 22050
        assert wave.shape == (30 * 22050, 1)
        assert 0.05 < np.abs(wave).max() < 1.0
        assert np.sqrt(np.mean(wave**2)) > 0.05  # real signal, not silence


def test_the_manifest_records_every_window_and_its_track(built):
    out, _ = built
    manifest = json.loads((out / "manifest.json").read_text())
    assert "PLACEHOLDER" in manifest["quadrant"]
    windows = {w["song"]: w for w in manifest["windows"]}
    assert sorted(windows) == ["A0001-01", "A0002-01", "A0002-02", "A0003-01"]
    assert windows["A0002-02"]["track"] == "A0002"
    assert windows["A0002-02"]["package"] == "alpha-music"
    assert windows["A0002-02"]["source"] == "music/b_theme.ogg"
    assert windows["A0002-01"]["start_s"] == 5.0
    assert windows["A0002-02"]["start_s"] == 35.0
    # The 2.5x burst at 20-21 s is in b_theme's first window: that window was scaled down.
    assert windows["A0002-01"]["gain"] < 1.0
    assert windows["A0002-02"]["gain"] == 1.0
    assert [t["track"] for t in manifest["tracks"]] == ["A0001", "A0002", "A0003"]
    assert {t["license"] for t in manifest["tracks"]} == {"GPL-2+"}
    assert {s["source"] for s in manifest["skipped"]} == {"music/jingle.ogg", "music/loop.music"}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_the_same_tracks_give_byte_identical_output(fake_packages, built, tmp_path):
    out, _ = built
    tracks, skipped = fake_packages
    _build(list(reversed(tracks)), skipped, tmp_path)
    assert _tree(tmp_path) == _tree(out)


def test_a_package_with_too_few_tracks_is_left_out(fake_packages, tmp_path):
    tracks, skipped = fake_packages
    summary = write_catalogue(tracks, tmp_path, min_tracks=2, skipped=skipped)
    assert summary["packages"]["beta-data"]["left_out"]
    assert summary["packages"]["beta-data"]["skipped"] == {FEW_TRACKS: 1}
    assert summary["totals"]["packages_left_out"] == ["beta-data"]
    assert summary["totals"]["tracks"] == 2
    assert "Left out" in (tmp_path / "LICENSES.md").read_text()
    # Numbering counts only the tracks used: no gap where the left-out package would be.
    names = sorted(p.name for p in (tmp_path / "MERGE_Audio_Complete/Q1").iterdir())
    assert names == ["A0001-01.mp3", "A0002-01.mp3", "A0002-02.mp3"]


def test_a_cached_package_is_reused_and_its_music_folder_read(tmp_path, monkeypatch):
    import benchmarks.realaudio as ra

    pkg = tmp_path / "hedgewars-data"
    music = pkg / "root/usr/share/games/hedgewars/Data/Music"
    _tone(music / "City.ogg", 50.0, 22050, 300.0, 1, "OGG")
    (music / "credits.txt").write_text("City.ogg=HSR <http://elhombresinremedio.com>\n")
    _tone(pkg / "root/usr/share/games/hedgewars/Data/Sounds/boom.ogg", 1.0, 22050, 90.0, 1, "OGG")
    doc = pkg / "root/usr/share/doc/hedgewars-data"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        "Source: https://hedgewars.org/\n\n"
        "Files: *\nCopyright: 2004-2018 Andrey Korotaev\nLicense: GPL-2\n\n"
        "Files: share/hedgewars/Data/Sounds/*\nCopyright: Someone\nLicense: GFDL-1.3\n"
    )
    stamp = {"package": "hedgewars-data", "version": "1.0.2-6", "maintainer": "Games Team"}
    (pkg / "stamp.json").write_text(json.dumps(stamp))

    def no_apt(*args, **kwargs):
        raise AssertionError("a cached package must not be downloaded again")

    monkeypatch.setattr(ra.subprocess, "run", no_apt)
    assert ra.fetch_package("hedgewars-data", "1.0.2-6", tmp_path) == pkg

    tracks, skips, info = ra.discover("hedgewars-data", "1.0.2-6", pkg)
    assert [t.source for t in tracks] == ["usr/share/games/hedgewars/Data/Music/City.ogg"]
    assert tracks[0].artist == "HSR" and tracks[0].license == "GPL-2"
    assert [s.reason for s in skips] == [NOT_AUDIO]  # credits.txt
    assert info.other_audio == 1 and info.source_url == "https://hedgewars.org/"
    assert info.maintainer == "Games Team"

    out = tmp_path / "out"
    summary = write_catalogue(tracks, out, min_tracks=1, skipped=skips, packages={info.name: info})
    assert summary["packages"]["hedgewars-data"]["windows"] == 1
    licences = (out / "LICENSES.md").read_text()
    assert "hedgewars-data` 1.0.2-6" in licences and "GFDL-1.3" in licences
    assert (out / "licenses/hedgewars-data.copyright").read_text() == (
        doc / "copyright"
    ).read_text()


def test_an_undecodable_file_is_skipped_with_a_reason_that_names_no_local_path(
    fake_packages, tmp_path
):
    tracks, _ = fake_packages
    bad = tmp_path / "broken.flac"
    bad.write_bytes(b"not audio at all" * 100)
    broken = TrackSource("beta-data", "sound/music/broken.flac", bad, version="1.0-1")
    summary = write_catalogue([*tracks, broken], tmp_path / "out", min_tracks=1)
    assert summary["packages"]["beta-data"]["skipped"] == {UNDECODABLE: 1}
    assert summary["packages"]["beta-data"]["tracks"] == 1
    assert str(tmp_path) not in (tmp_path / "out/manifest.json").read_text()
