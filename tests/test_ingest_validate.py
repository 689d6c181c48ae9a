"""Ingest and validation against the real PostgreSQL and S3 servers, on a catalogue with defects."""

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import sqlalchemy as sa

from musicvae.core import db
from musicvae.core.errors import BatchValidationError, ConfigurationError
from musicvae.core.storage import ObjectStore
from musicvae.ingest import run as ingest_run
from musicvae.ingest.run import run_ingest
from musicvae.quality.thresholds import load
from musicvae.quality.validate import ValidationResult, batch_failure, run_validation

from .badinput import encode, tone

BIMODAL = "MERGE_Bimodal_Balanced"


def _rows(settings, sql: str, **params):
    with db.engine(settings.database_url).connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def _status(settings) -> dict[str, tuple[str, str | None]]:
    return {
        r.track_id: (r.status, r.status_reason)
        for r in _rows(settings, "SELECT track_id, status, status_reason FROM tracks")
    }


def _snapshot(settings) -> tuple:
    """Everything an ingest rerun could touch: rows, their timestamps, and stored objects."""
    store = ObjectStore(settings)
    return (
        _rows(settings, "SELECT track_id, updated_at, status FROM tracks ORDER BY 1"),
        _rows(settings, "SELECT * FROM ingest_runs ORDER BY 1"),
        _rows(settings, "SELECT * FROM ingest_rejections ORDER BY 2, 3"),
        _rows(settings, "SELECT * FROM landing_files ORDER BY 1"),
        sorted(store.list_keys("")),
    )


def test_ingest_quarantines_or_rejects_each_bad_input_and_keeps_the_rest(settings, landing):
    result = run_ingest(settings, "ingest-1", str(landing))

    status = _status(settings)
    good = {t: s for t, s in status.items() if s[0] == "new"}
    assert result.tracks_new == len(status) == 24 + 4  # 24 good rows + 4 defect rows with an id
    assert len(good) == 24 + 2  # random bytes and Latin-1 lyrics only show at validation
    quarantined = {t: why for t, (s, why) in status.items() if s == "quarantined"}
    assert sorted(quarantined.values()) == [
        "audio file is empty (0 bytes)",
        "audio file missing; lyrics file missing",
    ]
    rejections = {
        r.item: r.reason for r in _rows(settings, "SELECT item, reason FROM ingest_rejections")
    }
    assert rejections["../../etc/passwd"].startswith("unsafe id")
    orphans = [item for item, why in rejections.items() if why.startswith("no metadata row")]
    assert len(orphans) == 2  # the audio and the lyrics file of the pair without a row
    # Every good track's files sit in object storage under content-addressed keys.
    store = ObjectStore(settings)
    keys = _rows(
        settings, "SELECT audio_key, audio_sha256, lyrics_key FROM tracks WHERE status = 'new'"
    )
    for audio_key, sha, lyrics_key in keys:
        assert audio_key.endswith(f"{sha}.mp3") and store.exists(audio_key)
        assert store.exists(lyrics_key)


def test_an_unchanged_rerun_uploads_and_writes_nothing(settings, landing):
    first = run_ingest(settings, "ingest-1", str(landing))
    assert first.changed and first.files_uploaded > 0
    before = _snapshot(settings)

    again = run_ingest(settings, "ingest-2", str(landing))

    assert not again.changed
    assert (again.files_uploaded, again.tracks_new, again.tracks_changed) == (0, 0, 0)
    assert again.tracks_unchanged == first.tracks_new
    assert _snapshot(settings) == before


def test_an_empty_landing_zone_ingests_nothing_and_does_not_fail(settings, tmp_path):
    """An hourly run before the first download lands finds nothing, every hour."""
    for run in ("hourly-1", "hourly-2"):
        result = run_ingest(settings, run, str(tmp_path))
        assert not result.changed
        assert (result.files_seen, result.tracks_new, result.rejected) == (0, 0, 0)
    assert _rows(settings, "SELECT * FROM tracks") == []
    assert list(ObjectStore(settings).list_keys("")) == []


@pytest.mark.parametrize("objects_per_file", [10, 0], ids=["listed", "asked-per-file"])
def test_a_file_missing_from_object_storage_is_uploaded_again(
    settings, landing, monkeypatch, objects_per_file
):
    # The landing zone is unchanged, so the hash cache vouches for every file; the object store
    # still has to hold it, whether the shard lists the store or asks about each file.
    monkeypatch.setattr(ingest_run, "LIST_OBJECTS_PER_FILE", objects_per_file)
    run_ingest(settings, "ingest-1", str(landing))
    key = _rows(settings, "SELECT audio_key FROM tracks WHERE status = 'new' LIMIT 1")[0][0]
    store = ObjectStore(settings)
    store.remove(key)

    again = run_ingest(settings, "ingest-2", str(landing))

    assert again.files_uploaded == 1 and not again.changed
    assert store.exists(key)


def test_a_shard_lists_the_stored_objects_only_while_the_store_is_small(
    settings, landing, monkeypatch
):
    run_ingest(settings, "ingest-1", str(landing))
    store = ObjectStore(settings)
    audio = {key for (key,) in _rows(settings, "SELECT audio_key FROM tracks") if key}
    with db.engine(settings.database_url).connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM landing_files")).scalar_one()
        assert audio and audio <= ingest_run._listed_objects(conn, store, stored)
        assert ingest_run._listed_objects(conn, store, 0) is None
        monkeypatch.setattr(ingest_run, "LIST_OBJECTS_PER_FILE", 0)
        assert ingest_run._listed_objects(conn, store, stored) is None


def test_a_changed_file_is_ingested_again_and_revalidated(settings, landing):
    run_ingest(settings, "ingest-1", str(landing))
    run_validation(settings, "validate-1")
    victim = _rows(
        settings,
        "SELECT track_id, audio_sha256, audio_song, quadrant FROM tracks "
        "WHERE status = 'valid' ORDER BY track_id LIMIT 1",
    )[0]
    target = landing / BIMODAL / "audio" / victim.quadrant / f"{victim.audio_song}.mp3"
    target.write_bytes(encode(tone(30.0, seed=99)))

    result = run_ingest(settings, "ingest-2", str(landing))

    assert (result.tracks_changed, result.tracks_new) == (1, 0)
    status, sha = _rows(
        settings, "SELECT status, audio_sha256 FROM tracks WHERE track_id = :t", t=victim.track_id
    )[0]
    assert status == "new" and sha != victim.audio_sha256
    # Validation looks only at the changed track.
    again = run_validation(settings, "validate-2")
    assert (again.tracks_checked, again.tracks_valid) == (1, 1)


def test_a_file_changed_into_a_copy_of_another_track_is_quarantined_as_the_copy(settings, landing):
    run_ingest(settings, "ingest-1", str(landing))
    run_validation(settings, "validate-1")
    first, second = _rows(
        settings,
        "SELECT track_id, audio_song, quadrant FROM tracks WHERE status = 'valid' "
        "ORDER BY track_id LIMIT 2",
    )
    audio = landing / BIMODAL / "audio"
    original = audio / second.quadrant / f"{second.audio_song}.mp3"
    (audio / first.quadrant / f"{first.audio_song}.mp3").write_bytes(original.read_bytes())
    run_ingest(settings, "ingest-2", str(landing))

    # The only track of this batch is not valid: the batch fails, and says why.
    with pytest.raises(BatchValidationError, match="none of the 1 tracks checked is valid"):
        run_validation(settings, "validate-2")
    [(check, detail)] = _rows(
        settings,
        "SELECT check_name, detail FROM track_issues WHERE run_id = 'validate-2'",
    )
    assert (check, detail) == ("audio_duplicate", f"same audio content as {second.track_id}")


def test_validation_quarantines_bad_content_with_reasons_and_publishes_a_report(settings, landing):
    run_ingest(settings, "ingest-1", str(landing))

    result = run_validation(settings, "validate-1")

    assert result.tracks_checked == 26
    assert result.tracks_valid == 25  # the Latin-1 lyrics are decoded, with a warning
    status = _status(settings)
    undecodable = [why for s, why in status.values() if why and "cannot be decoded" in why]
    assert len(undecodable) == 1 and status_count(status, "new") == 0
    warnings = _rows(
        settings, "SELECT check_name, detail FROM track_issues WHERE severity = 'warning'"
    )
    assert ("lyrics_utf8", "lyrics are not UTF-8; decoded as cp1252") in warnings
    profile = _rows(settings, "SELECT profile FROM track_profiles LIMIT 1")[0][0]
    assert profile["sample_rate"] == 22050 and 29 < profile["duration_s"] < 31
    run = _rows(settings, "SELECT tracks_checked, tracks_valid, report_key FROM data_quality_runs")[
        0
    ]
    assert run[:2] == (26, 25)
    report = ObjectStore(settings).get_bytes(run.report_key).decode()
    assert "26 tracks checked" in report and "cannot be decoded" in report
    # Nothing new: a second validation does no work and writes nothing.
    assert run_validation(settings, "validate-2").tracks_checked == 0
    assert len(_rows(settings, "SELECT * FROM data_quality_runs")) == 1


def status_count(status: dict, which: str) -> int:
    return sum(s == which for s, _ in status.values())


def test_an_s3_landing_zone_works_like_a_folder(settings, landing: Path):
    store = ObjectStore(settings)
    for path in landing.rglob("*"):
        if path.is_file():
            store.put_file(f"landing/{path.relative_to(landing).as_posix()}", path)
    from_s3 = run_ingest(settings, "ingest-s3", f"s3://{settings.bucket}/landing")
    assert from_s3.tracks_new == 28 and from_s3.rejected == 3
    assert not run_ingest(settings, "ingest-s3-2", f"s3://{settings.bucket}/landing").changed


def test_pointing_at_the_subset_folder_or_its_parent_ingests_the_same_tracks(settings, landing):
    subset = landing / "MERGE_Bimodal_Balanced"
    first = run_ingest(settings, "ingest-subset", str(subset))
    assert first.tracks_new == 28 and first.rejected == 3
    assert not run_ingest(settings, "ingest-parent", str(landing)).changed
    store = ObjectStore(settings)
    for path in subset.rglob("*"):
        if path.is_file():
            store.put_file(f"drop/MERGE_Bimodal_Balanced/{path.relative_to(subset)}", path)
    from_s3 = run_ingest(
        settings, "ingest-s3", f"s3://{settings.bucket}/drop/MERGE_Bimodal_Balanced"
    )
    assert not from_s3.changed and from_s3.tracks_unchanged == 28
    assert len(_rows(settings, "SELECT track_id FROM tracks")) == 28


def test_content_profiled_before_is_not_decoded_again(settings, landing):
    run_ingest(settings, "ingest-1", str(landing))
    run_validation(settings, "validate-1")
    csv = landing / BIMODAL / "merge_bimodal_balanced_metadata.csv"
    rows = pd.read_csv(csv, dtype=str, keep_default_na=False)
    rows.loc[rows.index[:2], "Title"] = "A corrected title"
    rows.to_csv(csv, index=False)
    assert run_ingest(settings, "ingest-2", str(landing)).tracks_changed == 2

    again = run_validation(settings, "validate-2")

    assert (again.tracks_checked, again.tracks_profiled) == (2, 0)
    assert again.tracks_valid == 2


def _previous(valid_fraction: float, tracks_checked: int):
    return SimpleNamespace(valid_fraction=valid_fraction, tracks_checked=tracks_checked)


def test_a_collapse_of_the_valid_fraction_fails_the_batch():
    limits = load()  # drop 0.5, at least 20 tracks in both runs
    result = ValidationResult("r", tracks_checked=100, tracks_valid=30)
    assert "collapsed from 90% (previous run) to 30%" in batch_failure(
        result, [], _previous(0.9, 100), limits
    )
    assert batch_failure(result, [], _previous(0.7, 100), limits) is None  # a drop of 0.4
    assert batch_failure(result, [], _previous(0.9, 10), limits) is None  # too few to compare
    assert batch_failure(result, [], None, limits) is None


def test_thresholds_come_from_the_documented_file_and_a_broken_one_says_what_to_do(tmp_path):
    limits = load()
    assert (limits.min_duration_s, limits.subset_rows["audio_complete"]) == (15.0, 3554)
    broken = tmp_path / "dq.toml"
    broken.write_text("[audio]\nmin_duration_s = 1.0\n")
    with pytest.raises(ConfigurationError, match=r"\[audio\] max_duration_s is missing"):
        load(broken)
