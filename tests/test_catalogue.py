"""The MERGE layout reader, on real MERGE metadata and on every malformed input it must survive."""

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from musicvae.core.errors import CatalogueError
from musicvae.core.lyrics import decode_lyrics
from musicvae.ingest import merge
from musicvae.ingest.landing import Landing
from musicvae.ingest.merge import genre_label

from .conftest import SEED_CSV

BIMODAL = "MERGE_Bimodal_Balanced"


def _landing(root: Path, rows: list[dict], files: dict[str, bytes]) -> Landing:
    folder = root / BIMODAL
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "merge_bimodal_balanced_metadata.csv", index=False)
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return Landing.open(str(root))


def _row(audio="A001", lyric="L051", quadrant="Q1", genres="Pop/Rock"):
    return {
        "Audio_Song": audio,
        "Lyric_Song": lyric,
        "Quadrant": quadrant,
        "Artist": "Someone",
        "Title": "Something",
        "Genres": genres,
    }


def test_reads_the_real_merge_metadata_with_its_quirks(tmp_path, scan):
    if not SEED_CSV.exists():
        pytest.skip("the real MERGE seed metadata is only available beside the project's CI")
    folder = tmp_path / BIMODAL
    folder.mkdir()
    (folder / "merge_bimodal_balanced_metadata.csv").write_bytes(SEED_CSV.read_bytes())
    real = pd.read_csv(SEED_CSV, dtype=str, keep_default_na=False)
    first = real.iloc[0]
    (folder / "audio" / first.Quadrant).mkdir(parents=True)
    (folder / "audio" / first.Quadrant / f"{first.Audio_Song}.mp3").write_bytes(b"x")

    [result] = scan(Landing.open(str(tmp_path)))
    entries = list(result.entries())

    # Every real id shape is accepted: no row is rejected for its id.
    assert result.rejections == []
    assert len(entries) == 2000
    assert {e.quadrant for e in entries} == {"Q1", "Q2", "Q3", "Q4"}
    labels = Counter(e.genre for e in entries)
    # The research code's label counts (LAYOUT.md): 69 genres, 12 songs without one.
    assert labels[None] == 12
    assert len(labels) - 1 == 69
    assert labels["Pop"] == 637 and labels["Country"] == 248 and labels["Electronic"] == 205
    # The one file on disk is paired; every other row is flagged as missing its audio.
    paired = [e for e in entries if e.audio_path]
    assert [e.song_id for e in paired] == [first.Audio_Song]
    assert all("audio file missing" in e.problems for e in entries if not e.audio_path)
    # Titles with commas and quotes and mojibake artists survive the round trip untouched.
    by_id = {e.song_id: e for e in entries}
    for _, row in real.iterrows():
        assert by_id[row.Audio_Song].metadata["Title"] == row.Title
        assert by_id[row.Audio_Song].metadata["Artist"] == row.Artist


@pytest.mark.parametrize(
    ("genres", "label"),
    [
        ("Pop/Rock,Vocal", "Pop"),
        ("Jazz,Vocal Jazz", "Jazz"),
        ("R&B", "R&B"),
        ("", None),
        (" Comedy/Spoken ", "Comedy"),
    ],
)
def test_genre_label_is_the_first_genre_cut_at_slash(genres, label):
    assert genre_label(genres) == label


def test_pairs_files_and_reports_every_bad_row_and_file(tmp_path, scan):
    rows = [
        _row("A001", "L051"),
        _row("A002", "L052", quadrant="Q2"),  # lyrics missing
        _row("../../etc/passwd", "L053"),  # path traversal
        _row("A0x4", "L054"),  # malformed id
        _row("A001", "L099"),  # duplicate id
        _row("A003", "L055", quadrant="Q4"),  # audio in two quadrants, neither its own
        _row("A004", "L056", quadrant="Q2"),  # audio in two quadrants, one its own
    ]
    files = {
        "audio/Q1/A001.mp3": b"a",
        "lyrics/Q1/L051.txt": b"l",
        "audio/Q2/A002.mp3": b"a",
        "audio/Q1/A003.mp3": b"a",
        "audio/Q2/A003.mp3": b"a",
        "audio/Q1/A004.mp3": b"a",
        "audio/Q2/A004.mp3": b"four",
        "audio/Q1/extra/A005.mp3": b"a",  # a folder too deep: outside the layout
        "audio/Q3/A777.mp3": b"a",  # no metadata row
        "audio/Q1/.DS_Store": b"junk",  # OS litter: ignored
        "notes.docx": b"?",  # outside the layout
    }
    [result] = scan(_landing(tmp_path, rows, files))
    entries = {e.song_id: e for e in result.entries()}
    assert set(entries) == {"A001", "A002", "A003", "A004"}
    assert entries["A001"].audio_path == f"{BIMODAL}/audio/Q1/A001.mp3"
    assert entries["A001"].lyrics_path == f"{BIMODAL}/lyrics/Q1/L051.txt"
    assert entries["A001"].problems == []
    assert entries["A002"].problems == ["lyrics file missing"]
    assert entries["A003"].audio_path is None
    assert entries["A003"].problems == [
        f"audio file ambiguous: {BIMODAL}/audio/Q1/A003.mp3, {BIMODAL}/audio/Q2/A003.mp3",
        "lyrics file missing",
    ]
    assert entries["A004"].audio_path == f"{BIMODAL}/audio/Q2/A004.mp3"
    # The paired file's size as listed, which the upload task checks against its hash cache.
    assert entries["A004"].stats[entries["A004"].audio_path][0] == len(b"four")
    assert set(entries["A001"].stats) == {entries["A001"].audio_path, entries["A001"].lyrics_path}
    reasons = {r.item: r.reason for r in result.rejections}
    assert reasons["../../etc/passwd"].startswith("unsafe id")
    assert reasons["A0x4"].startswith("malformed id")
    assert reasons["A001"] == "duplicate metadata row for this id"
    assert reasons[f"{BIMODAL}/audio/Q3/A777.mp3"] == "no metadata row for id 'A777'"
    assert reasons[f"{BIMODAL}/notes.docx"] == "file outside the MERGE layout"
    assert reasons[f"{BIMODAL}/audio/Q1/extra/A005.mp3"] == "file outside the MERGE layout"
    assert not any(".DS_Store" in item for item in reasons)


def test_metadata_and_listing_read_in_chunks_pair_and_reject_as_read_whole(
    tmp_path, monkeypatch, scan
):
    rows = [_row(f"A{i:03d}", f"L{i:03d}", quadrant=f"Q{i % 4 + 1}") for i in range(1, 12)]
    rows[7] = _row("A002", "L008")  # a duplicate of a row two chunks earlier
    rows[9] = _row("A0x9", "L010")  # malformed
    # Files 12 and 13, and those of the replaced rows 8 and 10, have no row.
    files = {f"audio/Q{i % 4 + 1}/A{i:03d}.mp3": b"a" for i in range(1, 14)}
    landing = _landing(tmp_path, rows, files)

    def read(chunk_rows: int) -> tuple[list, list]:
        monkeypatch.setattr(merge, "METADATA_CHUNK_ROWS", chunk_rows)
        monkeypatch.setattr(merge, "LISTING_CHUNK_FILES", chunk_rows)
        [result] = scan(landing)
        with pytest.raises(RuntimeError, match="read entries"):
            result.rejections  # noqa: B018 - incomplete until every row has been read
        entries = [(e.track_id, e.audio_path, e.lyrics_path, e.problems) for e in result.entries()]
        return entries, result.rejections

    whole, in_chunks = read(10_000), read(3)
    assert in_chunks == whole
    entries, rejections = in_chunks
    assert len(entries) == 9 and all(
        problems == ["lyrics file missing"] for *_, problems in entries
    )
    assert sorted(r.item for r in rejections) == [
        "A002",
        "A0x9",
        *(f"{BIMODAL}/audio/{q}.mp3" for q in ("Q1/A008", "Q1/A012", "Q2/A013", "Q3/A010")),
    ]


def test_a_metadata_row_that_cannot_be_parsed_is_a_clear_error(tmp_path, monkeypatch, scan):
    landing = _landing(tmp_path, [_row(f"A{i:03d}", f"L{i:03d}") for i in range(1, 6)], {})
    csv = tmp_path / BIMODAL / "merge_bimodal_balanced_metadata.csv"
    csv.write_text(csv.read_text() + "A099,L099,Q1,Someone,Something,Pop,one,field,too many\n")
    monkeypatch.setattr(merge, "METADATA_CHUNK_ROWS", 2)
    [result] = scan(landing)  # the header is fine
    with pytest.raises(CatalogueError, match="merge_bimodal_balanced_metadata.csv: cannot parse"):
        list(result.entries())


def test_symlinks_are_never_followed(tmp_path, scan):
    outside = tmp_path / "outside.mp3"
    outside.write_bytes(b"secret")
    landing = _landing(tmp_path / "land", [_row()], {"lyrics/Q1/L051.txt": b"l"})
    (tmp_path / "land" / BIMODAL / "audio" / "Q1").mkdir(parents=True)
    (tmp_path / "land" / BIMODAL / "audio" / "Q1" / "A001.mp3").symlink_to(outside)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "A002.mp3").write_bytes(b"secret")
    (tmp_path / "land" / BIMODAL / "audio" / "Q2").symlink_to(tmp_path / "elsewhere")
    [result] = scan(landing)
    [entry] = result.entries()
    assert entry.audio_path is None
    assert result.rejections == []  # nothing behind a link was listed
    assert sorted(landing.skipped_links) == [
        f"{BIMODAL}/audio/Q1/A001.mp3",
        f"{BIMODAL}/audio/Q2",
    ]
    with pytest.raises(CatalogueError, match="outside the landing zone"):
        landing.read("../outside.mp3")


def test_missing_required_column_fails_the_batch(tmp_path, scan):
    rows = [{k: v for k, v in _row().items() if k != "Quadrant"}]
    with pytest.raises(CatalogueError, match="Quadrant"):
        scan(_landing(tmp_path, rows, {}))


def test_an_empty_landing_zone_has_nothing_to_ingest_yet(tmp_path, scan):
    assert scan(Landing.open(str(tmp_path))) == []


def test_a_landing_zone_without_merge_folders_is_a_clear_error(tmp_path, scan):
    (tmp_path / "random.txt").write_text("hello")
    with pytest.raises(CatalogueError, match="no MERGE subset folder.*not one itself"):
        scan(Landing.open(str(tmp_path)))
    with pytest.raises(CatalogueError, match="not a folder"):
        Landing.open(str(tmp_path / "nope"))


def _entries(scan, landing: Landing) -> list[tuple]:
    return [(e.track_id, e.audio_path, e.lyrics_path) for s in scan(landing) for e in s.entries()]


def test_the_landing_may_be_one_subset_folder_itself_with_the_same_track_ids(tmp_path, scan):
    files = {"audio/Q1/A001.mp3": b"audio", "lyrics/Q1/L051.txt": b"words"}
    parent = _landing(tmp_path, [_row()], files)
    itself = Landing.open(str(tmp_path / BIMODAL))

    assert (
        _entries(scan, itself)
        == _entries(scan, parent)
        == [
            (
                "bimodal_balanced/A001",
                "MERGE_Bimodal_Balanced/audio/Q1/A001.mp3",
                "MERGE_Bimodal_Balanced/lyrics/Q1/L051.txt",
            )
        ]
    )
    rel = "MERGE_Bimodal_Balanced/audio/Q1/A001.mp3"
    assert itself.read(rel) == b"audio"
    # The ingest's hash cache is keyed by where the file really is, the same either way.
    assert itself.uri(rel) == parent.uri(rel) == str(tmp_path / BIMODAL / "audio/Q1/A001.mp3")


def test_a_renamed_subset_folder_is_known_by_its_metadata_csv(tmp_path, scan):
    _landing(tmp_path, [_row()], {"audio/Q1/A001.mp3": b"a", "lyrics/Q1/L051.txt": b"l"})
    renamed = tmp_path / "my download"
    (tmp_path / BIMODAL).rename(renamed)
    assert [t for t, *_ in _entries(scan, Landing.open(str(renamed)))] == ["bimodal_balanced/A001"]


def test_a_subset_folder_unzipped_into_one_of_the_same_name_is_read_as_a_parent(tmp_path, scan):
    outer = tmp_path / BIMODAL
    _landing(outer, [_row()], {"audio/Q1/A001.mp3": b"a", "lyrics/Q1/L051.txt": b"l"})
    assert [t for t, *_ in _entries(scan, Landing.open(str(outer)))] == ["bimodal_balanced/A001"]


def test_audio_only_and_lyrics_only_subsets(tmp_path, scan):
    for folder, suffix in (("MERGE_Audio_Complete", ".mp3"), ("MERGE_Lyrics_Balanced", ".txt")):
        subset = folder.removeprefix("MERGE_").lower()
        (tmp_path / folder / "Q3").mkdir(parents=True)
        song = "A010" if suffix == ".mp3" else "L010"
        pd.DataFrame([{"Song": song, "Quadrant": "Q3", "Genres": "Blues"}]).to_csv(
            tmp_path / folder / f"merge_{subset}_metadata.csv", index=False
        )
        (tmp_path / folder / "Q3" / f"{song}{suffix}").write_bytes(b"x")
    results = {s.subset: s for s in scan(Landing.open(str(tmp_path)))}
    [audio] = results["audio_complete"].entries()
    [lyrics] = results["lyrics_balanced"].entries()
    assert (audio.audio_path, audio.lyrics_path, audio.track_id) == (
        "MERGE_Audio_Complete/Q3/A010.mp3",
        None,
        "audio_complete/A010",
    )
    assert (lyrics.lyrics_path, lyrics.audio_path) == ("MERGE_Lyrics_Balanced/Q3/L010.txt", None)


@pytest.mark.parametrize(
    ("data", "text", "encoding", "fallback"),
    [
        ("café".encode(), "café", "utf-8", False),
        (b"\xef\xbb\xbfhello", "hello", "utf-8-sig", False),
        ("coração".encode("latin-1"), "coração", "cp1252", True),
    ],
)
def test_lyrics_decoding_records_the_fallback(data, text, encoding, fallback):
    decoded = decode_lyrics(data)
    assert (decoded.text, decoded.encoding, decoded.fallback) == (text, encoding, fallback)
