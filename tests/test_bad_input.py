"""Every kind of bad input, ingested and validated against the real PostgreSQL and S3 servers:
each gets its exact outcome, and every good track still goes through."""

import re
import shutil

import pandas as pd
import pytest
import sqlalchemy as sa

from musicvae.core import db
from musicvae.core.errors import BatchValidationError, MetadataSchemaError
from musicvae.core.storage import ObjectStore
from musicvae.ingest.run import run_ingest
from musicvae.quality import batch
from musicvae.quality.validate import plan_validation, profile_shard, run_validation
from musicvae.ui.reports import docs_file, report_html

from . import badinput


@pytest.fixture(scope="module")
def bad_catalogue(tmp_path_factory):
    # Spaces and non-ASCII letters in the landing zone's own path, too.
    root = tmp_path_factory.mktemp("bad") / "my downloads" / "Música"
    root.mkdir(parents=True)
    return root, badinput.build(root)


def _rows(settings, sql: str, **params):
    with db.engine(settings.database_url).connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def _copy(bad_catalogue, tmp_path):
    root, cases = bad_catalogue
    target = tmp_path / "landing zone" / "Música"
    shutil.copytree(root, target, symlinks=True)
    return target, cases


def test_every_bad_input_gets_its_exact_outcome_and_every_good_track_goes_through(
    settings, bad_catalogue
):
    root, cases = bad_catalogue
    run_ingest(settings, "ingest", str(root))
    result = run_validation(settings, "validate")

    status = {
        r.track_id: (r.status, r.status_reason)
        for r in _rows(settings, "SELECT track_id, status, status_reason FROM tracks")
    }
    rejected = {r.item: r.reason for r in _rows(settings, "SELECT * FROM ingest_rejections")}
    warnings = {
        (r.track_id, r.check_name)
        for r in _rows(settings, "SELECT * FROM track_issues WHERE severity = 'warning'")
    }
    for case in cases:
        if case.outcome == "rejected":
            assert badinput.matches(rejected.pop(case.where, None), case.reason), case
            assert case.where not in status, case
        elif case.outcome == "ignored":
            assert not any(".DS_Store" in k for k in [*status, *rejected]), case
        else:
            got, why = status.pop(case.where)
            assert got == case.outcome, (case, why)
            assert why is None if case.reason is None else badinput.matches(why, case.reason), (
                case,
                why,
            )
            assert case.warning is None or (case.where, case.warning) in warnings, case
    # Nothing unexplained: every track and rejection is one of the cases.
    assert status == {} and rejected == {}
    good = [c for c in cases if c.outcome == "valid"]
    assert result.tracks_valid == len(good) and result.status == "passed"
    # The link outside the dataset was never read: its bytes are nowhere in object storage.
    outside = (root.parent / "outside-the-dataset.mp3").read_bytes()
    store = ObjectStore(settings)
    stored = {store.get_bytes(k) for k in store.list_keys("raw/audio/")}
    assert outside not in stored
    profile = dict(
        _rows(
            settings,
            "SELECT t.metadata->>'Title', p.profile FROM track_profiles p "
            "JOIN tracks t USING (track_id)",
        )
    )
    stereo = next(p for p in profile.values() if p.get("sample_rate") == 48000)
    assert stereo["channels"] == 2
    artists = {r[0] for r in _rows(settings, "SELECT artist FROM tracks")}
    assert "SinÃ©ad OâConnor" in artists  # kept as the release wrote it


def test_in_shards_of_two_every_track_ends_the_same_and_the_report_lists_the_first(
    new_settings, bad_catalogue, monkeypatch
):
    # The copies of other tracks are found whichever shard holds the original.
    root, _ = bad_catalogue
    monkeypatch.setattr(batch, "REPORT_TRACKS", 3)
    ends = {}
    for size in (1000, 2):
        settings = new_settings()
        run_ingest(settings, "ingest", str(root))
        shards = [profile_shard(settings, s) for s in plan_validation(settings, "v", size=size)]
        result = run_validation(settings, "v", shards=shards)
        ends[size] = (
            _rows(settings, "SELECT track_id, status, status_reason FROM tracks ORDER BY 1"),
            _rows(settings, "SELECT track_id, check_name, detail FROM track_issues ORDER BY 1, 2"),
        )
    assert ends[2] == ends[1000] and len(shards) > 5
    assert any(check == "audio_duplicate" for _, check, _ in ends[2][1])
    report = ObjectStore(settings).get_bytes(result.report_key).decode()
    listed = re.findall(r"<tr class=\w+><td>[^<]*</td><td>(valid|quarantined)</td>", report)
    assert listed == ["quarantined"] * 3 and result.tracks_quarantined > 3
    assert f"The first 3 of {result.tracks_checked} tracks, quarantined first" in report


def test_expectation_results_and_data_docs_are_published(settings, bad_catalogue):
    root, cases = bad_catalogue
    run_ingest(settings, "ingest", str(root))
    run_validation(settings, "validate")

    results = {
        (r.suite, r.expectation, r.column_name): r
        for r in _rows(settings, "SELECT * FROM expectation_results WHERE run_id = 'validate'")
    }
    duration = results[("track_profiles", "expect_column_values_to_be_between", "duration_s")]
    assert not duration.success and duration.unexpected_count == 3  # truncated, 2 s, 10 min
    assert results[("metadata.bimodal_balanced", "expect_column_to_exist", "Genres")].success
    rows = results[("metadata.bimodal_balanced", "expect_table_row_count_to_equal", None)]
    assert not rows.success and rows.kwargs == {"value": 2000} and rows.severity == "warning"
    run = _rows(settings, "SELECT status, docs_key, report_key FROM data_quality_runs")[0]
    assert run.status == "passed"
    index, media = docs_file(settings, "validate", "index.html")
    assert media == "text/html" and b"track_profiles" in index
    # The suites ran on PostgreSQL: its credentials stay out of the published pages.
    password = sa.engine.make_url(settings.database_url).password.encode()
    store = ObjectStore(settings)
    pages = list(store.list_keys(run.docs_key.rsplit("/", 1)[0]))
    assert len(pages) > 3 and not any(password in store.get_bytes(k) for k in pages)
    page = report_html(settings, None, "runs/{run}/")
    assert "<base href='runs/validate/'>" in page and "docs/index.html" in page


def test_a_metadata_csv_without_a_required_column_fails_the_validation_batch(
    settings, bad_catalogue, tmp_path
):
    landing, _ = _copy(bad_catalogue, tmp_path)
    csv = landing / badinput.BIMODAL / "merge_bimodal_balanced_metadata.csv"
    pd.read_csv(csv, dtype=str).drop(columns=["Genres"]).to_csv(csv, index=False)
    run_ingest(settings, "ingest", str(landing))

    with pytest.raises(BatchValidationError, match="required column 'Genres' is missing"):
        run_validation(settings, "validate")

    assert _rows(settings, "SELECT DISTINCT status FROM tracks WHERE status <> 'quarantined'") == [
        ("new",)
    ]
    status, failure, report = _rows(
        settings, "SELECT status, failure, report_key FROM data_quality_runs"
    )[0]
    assert status == "failed" and "'Genres' is missing" in failure
    assert "FAILED as a batch" in ObjectStore(settings).get_bytes(report).decode()


def test_a_metadata_csv_without_an_id_column_fails_the_ingest_and_writes_nothing(
    settings, bad_catalogue, tmp_path
):
    landing, _ = _copy(bad_catalogue, tmp_path)
    csv = landing / badinput.BIMODAL / "merge_bimodal_balanced_metadata.csv"
    pd.read_csv(csv, dtype=str).drop(columns=["Lyric_Song"]).to_csv(csv, index=False)

    with pytest.raises(MetadataSchemaError, match=r"\['Lyric_Song'\] missing"):
        run_ingest(settings, "ingest", str(landing))

    assert _rows(settings, "SELECT count(*) FROM tracks")[0][0] == 0
    assert list(ObjectStore(settings).list_keys("raw/")) == []


def test_a_batch_without_one_valid_track_fails(settings, tmp_path):
    root = tmp_path / "landing"
    folder = root / badinput.BIMODAL
    (folder / "audio" / "Q1").mkdir(parents=True)
    (folder / "lyrics" / "Q1").mkdir(parents=True)
    rows = []
    for n in (1, 2):
        rows.append(
            {
                "Audio_Song": f"A00{n}",
                "Lyric_Song": f"L00{n}",
                "Quadrant": "Q1",
                "Artist": "a",
                "Title": "t",
                "Genres": "Pop",
            }
        )
        (folder / "audio" / "Q1" / f"A00{n}.mp3").write_bytes(badinput.encode(badinput.tone(2)))
        (folder / "lyrics" / "Q1" / f"L00{n}.txt").write_text(badinput.LYRICS)
    pd.DataFrame(rows).to_csv(folder / "merge_bimodal_balanced_metadata.csv", index=False)
    run_ingest(settings, "ingest", str(root))

    with pytest.raises(BatchValidationError, match="none of the 2 tracks checked is valid"):
        run_validation(settings, "validate")
    assert _rows(settings, "SELECT DISTINCT status FROM tracks") == [("new",)]
