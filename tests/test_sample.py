"""Tests for the MERGE-shaped sample catalogue builder (the musicvae.local.sample package)."""

from __future__ import annotations

import csv
import itertools
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from musicvae.ingest.merge import genre_label
from musicvae.local.sample.audio import encode_mp3, render_audio
from musicvae.local.sample.genres import genre_counts
from musicvae.local.sample.layout import (
    DEFECT_IDS,
    MARKER_NAME,
    METADATA_NAME,
    ROOT_NAME,
    build_sample,
)
from musicvae.local.sample.lyrics import genre_vocabulary, render_lyrics

TRACKS = 24

# Written out again here rather than imported, so a change to the module's list fails a test.
COLUMNS = [
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
AUDIO_SHAPES = {
    "A001": re.compile(r"^A\d{3,}$"),
    "A061-66": re.compile(r"^A\d{3,}-\d{2}$"),
    "MT": re.compile(r"^MT\d{10}$"),
}
LYRIC_SHAPES = {
    "L051": re.compile(r"^L\d{3,}$"),
    "L111-66": re.compile(r"^L\d{3,}-\d{2}$"),
    "MT": re.compile(r"^MT\d{10}$"),
}
REAL_TOP = {
    "Pop": 637,
    "Country": 248,
    "Electronic": 205,
    "Rap": 150,
    "Blues": 129,
    "Jazz": 114,
    "R&B": 98,
    "Folk": 59,
}


def read_metadata(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / METADATA_NAME, dtype=str, keep_default_na=False)


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    return build_sample(out, TRACKS, seed=0, progress=False)


@pytest.fixture(scope="module")
def metadata(built) -> pd.DataFrame:
    return read_metadata(built.root)


@pytest.fixture(scope="module")
def defective(tmp_path_factory):
    out = tmp_path_factory.mktemp("defects")
    return build_sample(out, 12, seed=3, defects=True, progress=False)


# --- layout and metadata --------------------------------------------------------------------


def test_layout(built):
    assert built.root.name == ROOT_NAME
    for kind in ("audio", "lyrics"):
        assert sorted(p.name for p in (built.root / kind).iterdir()) == ["Q1", "Q2", "Q3", "Q4"]
    assert (built.root / "merge_bimodal_balanced_metadata.csv").is_file()


def test_metadata_header_is_exactly_the_merge_columns(built):
    with open(built.root / METADATA_NAME, newline="", encoding="utf-8") as fh:
        assert next(csv.reader(fh)) == COLUMNS


def test_metadata_round_trips_through_pandas(built, metadata):
    text = (built.root / METADATA_NAME).read_text(encoding="utf-8")
    assert metadata.to_csv(index=False, lineterminator="\n") == text
    assert len(metadata) == built.tracks == TRACKS
    titles = metadata["Title"]
    assert any("," in t and '"' in t for t in titles)
    assert any(re.search(r'"\w+"', t) for t in titles)
    assert '""' in text  # quotes inside a quoted field are doubled, not dropped


def test_every_id_shape_is_present(metadata):
    for column, shapes in (("Audio_Song", AUDIO_SHAPES), ("Lyric_Song", LYRIC_SHAPES)):
        for name, shape in shapes.items():
            assert metadata[column].str.match(shape).any(), f"no {column} shaped like {name}"
        assert all(any(s.match(v) for s in shapes.values()) for v in metadata[column])


def test_id_pairing(metadata):
    for audio, lyric in zip(metadata["Audio_Song"], metadata["Lyric_Song"], strict=True):
        if audio.startswith("MT"):
            assert lyric == audio
            continue
        a_number, _, a_suffix = audio[1:].partition("-")
        l_number, _, l_suffix = lyric[1:].partition("-")
        assert a_number != l_number  # A001 <-> L051: the two halves are numbered apart
        assert a_suffix == l_suffix  # A061-66 <-> L111-66


def test_ids_are_unique(metadata):
    for column in ("Audio_Song", "Lyric_Song", "AllMusic Id"):
        assert metadata[column].is_unique, column


def test_quadrants_are_balanced(metadata):
    assert Counter(metadata["Quadrant"]) == {q: TRACKS // 4 for q in ("Q1", "Q2", "Q3", "Q4")}


def test_realistic_quirks(metadata):
    artists = metadata["Artist"]
    assert any("\ufffd" in a for a in artists)  # bytes lost to U+FFFD
    assert any("Ã" in a for a in artists)  # UTF-8 read as Latin-1
    years = metadata["Year"]
    assert years.str.fullmatch(r"\d{4}-\?\?-\?\?").any()
    assert years.str.fullmatch(r"\d{2}/\d{2}/\d{4}").any()
    assert years.str.fullmatch(r"\d{4}").any()
    assert (metadata["Genres"] == "").sum() >= 1
    for genres, count in zip(metadata["Genres"], metadata["num_Genres"], strict=True):
        assert int(count) == (len(genres.split(",")) if genres else 0)
    for moods, count in zip(metadata["MoodsAll"], metadata["num_MoodsAll"], strict=True):
        assert int(count) == len(moods.split(","))


def test_summary_genres_match_metadata(built, metadata):
    labels = Counter(genre_label(g) for g in metadata["Genres"])
    labels.pop(None, None)
    assert built.genres == dict(labels)
    assert set(REAL_TOP) <= set(built.genres)


# --- files ----------------------------------------------------------------------------------


def test_every_row_has_decodable_audio(built, metadata):
    for audio_id, quadrant in zip(metadata["Audio_Song"], metadata["Quadrant"], strict=True):
        path = built.root / "audio" / quadrant / f"{audio_id}.mp3"
        info = sf.info(path)
        assert (info.samplerate, info.channels) == (22050, 1)
        assert 29.5 <= info.duration <= 30.5
        data, _ = sf.read(path, dtype="float32")
        assert np.sqrt(np.mean(data**2)) > 0.01, f"{path} is silent"
        assert np.max(np.abs(data)) < 0.9, f"{path} clips"


def test_every_row_has_utf8_lyrics(built, metadata):
    for lyric_id, quadrant in zip(metadata["Lyric_Song"], metadata["Quadrant"], strict=True):
        text = (built.root / "lyrics" / quadrant / f"{lyric_id}.txt").read_bytes().decode("utf-8")
        assert 80 <= len(text.split()) <= 250


def test_parallel_output_equals_in_process_render(built, metadata):
    row = metadata.iloc[5]  # rows are written in track-index order
    label = genre_label(row["Genres"])
    expected = encode_mp3(render_audio(label, row["Quadrant"], 0, 5))
    assert (built.root / "audio" / row["Quadrant"] / f"{row['Audio_Song']}.mp3").read_bytes() == (
        expected
    )


def test_same_arguments_give_identical_bytes(built, tmp_path):
    again = build_sample(tmp_path, TRACKS, seed=0, progress=False)
    assert tree(again.root) == tree(built.root)


def test_rebuild_rewrites_nothing(built):
    files = [p for p in built.root.rglob("*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in files}
    again = build_sample(built.root.parent, TRACKS, seed=0, progress=False)
    assert again.written == 0
    assert again.unchanged == built.written + built.unchanged == 2 * TRACKS + 1
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert not list(built.root.rglob("*.tmp"))


def test_rebuild_repairs_damaged_files_and_survives_a_lost_marker(tmp_path):
    first = build_sample(tmp_path, 3, seed=2, progress=False)
    pristine = tree(first.root)
    mp3 = next(first.root.glob("audio/Q1/*.mp3"))
    lyrics = next(first.root.glob("lyrics/Q2/*.txt"))
    mp3.write_bytes(b"not audio")
    lyrics.write_text("edited")
    repaired = build_sample(tmp_path, 3, seed=2, progress=False)
    assert repaired.written == 2
    assert tree(first.root) == pristine
    (first.root / MARKER_NAME).write_text("{not json")
    again = build_sample(tmp_path, 3, seed=2, progress=False)  # renders and compares instead
    assert again.written == 0 and again.unchanged == 2 * 3 + 1
    assert tree(first.root) == pristine


def test_other_seed_gives_other_catalogue(tmp_path):
    a = build_sample(tmp_path / "a", 3, seed=0, progress=False)
    b = build_sample(tmp_path / "b", 3, seed=1, progress=False)
    ids = [read_metadata(x.root)["AllMusic Id"].tolist() for x in (a, b)]
    assert ids[0] != ids[1]
    assert tree(a.root) != tree(b.root)


def test_refuses_a_folder_it_did_not_make(tmp_path):
    foreign = tmp_path / ROOT_NAME / METADATA_NAME
    foreign.parent.mkdir()
    foreign.write_text("real data\n")
    with pytest.raises(FileExistsError):
        build_sample(tmp_path, 4, progress=False)
    assert foreign.read_text() == "real data\n"


# --- genre labels and the count allocation --------------------------------------------------


@pytest.mark.parametrize(
    ("field", "label"),
    [
        ("Pop/Rock,Vocal", "Pop"),
        ("Jazz,Vocal Jazz,Traditional Pop,Early Pop/Rock,Pop/Rock,Vocal,Vocal Pop", "Jazz"),
        ("R&B", "R&B"),
        (" Stage & Screen ,Soundtracks", "Stage & Screen"),
        ("Comedy/Spoken", "Comedy"),
        ("", None),
        (float("nan"), None),
        (None, None),
    ],
)
def test_genre_label(field, label):
    assert genre_label(field) == label


def test_reference_distribution_at_2000():
    counts = genre_counts(2000)
    assert sum(counts.values()) == 2000
    assert counts.pop(None) == 12
    assert len(counts) == 69
    assert {label: counts[label] for label in REAL_TOP} == REAL_TOP
    tail = {label: n for label, n in counts.items() if label not in REAL_TOP}
    assert sum(tail.values()) == 2000 - 12 - sum(REAL_TOP.values())
    assert max(tail.values()) < REAL_TOP["Folk"] and min(tail.values()) >= 1


@pytest.mark.parametrize("tracks", [8, 24, 40, 200, 1000])
def test_small_samples_scale_and_keep_the_top_genres(tracks):
    counts = genre_counts(tracks)
    assert sum(counts.values()) == tracks
    assert set(REAL_TOP) <= set(counts)
    if tracks >= 24:  # below that, keeping eight genres present outweighs proportionality
        assert abs(counts["Pop"] - 637 * tracks / 2000) <= 1.5
    assert counts == genre_counts(tracks)


def test_allocation_rejects_empty_sample():
    with pytest.raises(ValueError):
        genre_counts(0)


# --- learnable structure --------------------------------------------------------------------


def log_spectrum(clip: np.ndarray) -> np.ndarray:
    frames = clip[: clip.size // 2048 * 2048].reshape(-1, 2048) * np.hanning(2048)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    bands = np.stack([b.mean(axis=1) for b in np.array_split(power, 64, axis=1)], axis=1)
    features = np.log(bands + 1e-10).mean(axis=0)
    return features - features.mean()  # loudness is per-track gain, not genre


def test_genres_are_audibly_distinct():
    genres = ["Pop", "Country", "Electronic", "Rap"]
    quadrants = ["Q1", "Q2", "Q3", "Q4"]
    feats, labels = [], []
    for g, genre in enumerate(genres):
        for i, quadrant in enumerate(quadrants):
            feats.append(log_spectrum(render_audio(genre, quadrant, 0, 100 + 10 * g + i)))
            labels.append(genre)
    feats, labels = np.array(feats), np.array(labels)
    pairs = list(itertools.combinations(range(len(labels)), 2))
    within = np.mean(
        [np.linalg.norm(feats[a] - feats[b]) for a, b in pairs if labels[a] == labels[b]]
    )
    between = np.mean(
        [np.linalg.norm(feats[a] - feats[b]) for a, b in pairs if labels[a] != labels[b]]
    )
    assert between > 1.5 * within
    correct = 0
    for i in range(len(labels)):
        rest = np.arange(len(labels)) != i
        centroids = {g: feats[rest & (labels == g)].mean(axis=0) for g in genres}
        correct += (
            min(centroids, key=lambda g: np.linalg.norm(feats[i] - centroids[g])) == labels[i]
        )
    assert correct / len(labels) >= 0.75


def test_tracks_of_one_genre_differ():
    a, b = (render_audio("Pop", "Q1", 0, i) for i in (1, 2))
    assert not np.array_equal(a, b)
    assert np.max(np.abs(a)) < 0.9 and a.dtype == np.float32 and a.size == 30 * 22050


def test_lyrics_mix_genre_and_shared_words():
    shares = []
    for i in range(8):
        words = render_lyrics("Country", "Q3", 0, i).split()
        vocab = set(genre_vocabulary("Country"))
        shares.append(sum(w.lower() in vocab for w in words) / len(words))
    assert 0.25 <= np.mean(shares) <= 0.45
    assert len(genre_vocabulary("Country")) == 40
    assert set(genre_vocabulary("Soul")) & set(genre_vocabulary("R&B"))  # child and parent
    assert set(genre_vocabulary("Country")) & set(genre_vocabulary("Folk"))  # siblings
    assert not set(genre_vocabulary("Pop")) & set(genre_vocabulary("Electronic"))


# --- deliberate defects ---------------------------------------------------------------------


def test_defects_are_listed(defective):
    assert defective.tracks == 12
    assert len(defective.defects) == 6
    assert all(isinstance(d, str) and d for d in defective.defects)


def test_defect_rows_sit_beside_the_good_rows(defective):
    metadata = read_metadata(defective.root)
    in_csv = set(metadata["Audio_Song"])
    expected = {DEFECT_IDS[k] for k in DEFECT_IDS if k != "orphan_files"}
    assert expected <= in_csv and DEFECT_IDS["orphan_files"] not in in_csv
    assert len(metadata) == 12 + 5
    assert metadata["Audio_Song"].is_unique and metadata["Lyric_Song"].is_unique


def _row(defective, key: str) -> pd.Series:
    metadata = read_metadata(defective.root)
    return metadata.loc[metadata["Audio_Song"] == DEFECT_IDS[key]].iloc[0]


def test_zero_byte_audio(defective):
    row = _row(defective, "empty_audio")
    assert (
        defective.root / "audio" / row["Quadrant"] / f"{row['Audio_Song']}.mp3"
    ).stat().st_size == 0


def test_random_bytes_audio(defective):
    row = _row(defective, "corrupt_audio")
    path = defective.root / "audio" / row["Quadrant"] / f"{row['Audio_Song']}.mp3"
    assert path.stat().st_size > 0
    with pytest.raises(sf.LibsndfileError):
        sf.read(path)


def test_latin1_lyrics(defective):
    row = _row(defective, "latin1_lyrics")
    raw = (defective.root / "lyrics" / row["Quadrant"] / f"{row['Lyric_Song']}.txt").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    text = raw.decode("latin-1")
    assert "café" in text and "coração" in text
    audio, rate = sf.read(defective.root / "audio" / row["Quadrant"] / f"{row['Audio_Song']}.mp3")
    assert rate == 22050 and np.sqrt(np.mean(audio**2)) > 0.01


def test_row_without_files(defective):
    row = _row(defective, "missing_files")
    on_disk = {p.stem for p in defective.root.rglob("*") if p.is_file()}
    assert row["Audio_Song"] not in on_disk and row["Lyric_Song"] not in on_disk


def test_files_without_row(defective):
    orphan = DEFECT_IDS["orphan_files"]
    audio = list(defective.root.glob(f"audio/Q*/{orphan}.mp3"))
    lyrics = list(defective.root.glob(f"lyrics/Q*/{orphan}.txt"))
    assert len(audio) == len(lyrics) == 1
    assert sf.info(audio[0]).duration > 29
    metadata = read_metadata(defective.root)
    assert orphan not in set(metadata["Audio_Song"]) | set(metadata["Lyric_Song"])


def test_path_traversal_row(defective):
    row = _row(defective, "path_traversal")
    assert row["Audio_Song"] == "../../etc/passwd"
    assert not any("passwd" in p.name for p in defective.root.parent.rglob("*"))
    assert not (defective.root.parent / "etc").exists()


def test_dropping_defects_removes_their_files(tmp_path):
    with_defects = build_sample(tmp_path, 4, seed=5, defects=True, progress=False)
    assert list(with_defects.root.rglob("MT99999900*"))
    clean = build_sample(tmp_path, 4, seed=5, progress=False)
    assert clean.defects == []
    assert not list(clean.root.rglob("MT99999900*"))
    assert len(read_metadata(clean.root)) == 4


def test_the_audio_complete_layout_is_read_as_merge_audio_complete(tmp_path, scan):
    from musicvae.ingest.landing import Landing

    built = build_sample(tmp_path, tracks=8, seed=2, progress=False, layout="audio_complete")
    assert built.root.name == "MERGE_Audio_Complete"
    assert not (built.root / "lyrics").exists() and not (built.root / "audio").exists()
    landing = Landing.open(str(built.root))
    [subset] = scan(landing)
    entries = list(subset.entries())
    assert subset.subset == "audio_complete" and subset.rejections == []
    assert len(entries) == 8
    assert all(e.audio_path and e.lyrics_path is None and not e.problems for e in entries)
    with pytest.raises(ValueError, match="defects need lyrics"):
        build_sample(tmp_path, tracks=8, defects=True, layout="audio_complete")


def test_a_catalogue_beyond_four_digit_ids_keeps_every_id_valid_and_unique():
    # MERGE's A and L ids have four digits at most: the 100,000-track benchmark's catalogue
    # lost 40% of its tracks to "malformed id" before the plan switched to MT ids.
    from musicvae.ingest.merge import AUDIO_ID, LYRIC_ID
    from musicvae.local.sample import metadata

    rows = metadata.plan(25_000, seed=0)
    assert all(AUDIO_ID.match(r.audio_id) and LYRIC_ID.match(r.lyric_id) for r in rows)
    assert len({r.audio_id for r in rows}) == len({r.lyric_id for r in rows}) == 25_000
    assert not any(r.audio_id.startswith("A") for r in rows[-100:])  # past A9949: MT ids
