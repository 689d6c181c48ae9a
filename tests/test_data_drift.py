"""Feature drift of new data against the champion's training data: the statistics, then the whole
path on the real servers (validate writes it, assign adds the out-of-distribution share, the
retrain form says so until a model trained on that data is champion)."""

from dataclasses import replace

import numpy as np
import pytest

from musicvae.catalogue.assign import assign_new_tracks
from musicvae.catalogue.recluster import run_recluster
from musicvae.ingest.run import run_ingest
from musicvae.quality.data_drift import FEATURES, chance_of_ood, compare, psi
from musicvae.quality.thresholds import load
from musicvae.quality.validate import run_validation
from musicvae.registry.snapshots import take_snapshot
from musicvae.retrain.form import drift_notice
from musicvae.retrain.promotion import decide
from musicvae.retrain.steps import prepare_features
from musicvae.ui import charts

from .driftbatch import SHIFTED, add_batch
from .test_retrain import FAST, _catalogue, _query, _train_and_register

LIMITS = load()


def _draw(seed: int, n: int, shift: float = 0.0) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    return {
        "rms_dbfs": list(rng.normal(-14 + shift, 2, n)),
        "duration_s": [30.0] * n,  # a constant feature, as on a sample catalogue
        "lyrics_words": list(rng.poisson(120, n)),
    }


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shifted_one():
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 5000)
    assert psi(reference, rng.normal(0, 1, 5000), 10) < 0.02
    assert psi(reference, rng.normal(1, 1, 5000), 10) > 0.5
    # A constant reference gives one edge; a batch on the other side of it is all change.
    assert psi(np.zeros(100), np.zeros(50), 10) == pytest.approx(0.0)
    assert psi(np.zeros(100), np.ones(50), 10) > 5


def test_tracks_beyond_the_threshold_count_as_drift_only_when_chance_cannot_explain_them():
    # 2 of 12 tracks beyond the 99% quantile of 25 tracks (about their largest distance, which 1
    # in 26 tracks like them passes): 8% by chance, noise.
    assert chance_of_ood(2, 12, 25, 0.99) > LIMITS.max_ood_pvalue
    # All 12 of them, or 2 of 12 against a catalogue of 10,000 (1% each): drift.
    assert chance_of_ood(12, 12, 25, 0.99) < 1e-12
    assert chance_of_ood(2, 12, 10_000, 0.99) < 0.01
    assert chance_of_ood(0, 12, 25, 0.99) == pytest.approx(1.0)
    # The tail grows with the count's chance: one more track far away is rarer.
    assert chance_of_ood(3, 12, 25, 0.99) < chance_of_ood(2, 12, 25, 0.99)


def test_only_a_shifted_feature_drifts_and_small_batches_are_not_judged():
    reference = _draw(0, 300)
    same = compare(reference, _draw(1, 40), LIMITS)
    assert set(same) == {"rms_dbfs", "duration_s", "lyrics_words"}
    assert not any(s.drifted for s in same.values())
    moved = compare(reference, _draw(2, 40, shift=6.0), LIMITS)
    assert [n for n, s in moved.items() if s.drifted] == ["rms_dbfs"]
    assert moved["rms_dbfs"].ks > 0.8 and moved["rms_dbfs"].p_value < 1e-10
    assert moved["rms_dbfs"].n_batch == 40 and moved["rms_dbfs"].n_reference == 300
    # Below min_tracks nothing is compared; missing values (no lyrics) do not count.
    few = _draw(3, LIMITS.min_drift_tracks - 1, shift=6.0)
    assert compare(reference, few, LIMITS) == {}
    partial = {**_draw(4, 40, shift=6.0), "lyrics_words": [None] * 40}
    assert "lyrics_words" not in compare(reference, partial, LIMITS)


def test_a_psi_over_its_limit_is_not_drift_when_the_test_says_it_may_be_chance():
    reference = _draw(0, 300)
    small = _draw(5, LIMITS.min_drift_tracks)
    shifts = compare(reference, small, replace(LIMITS, max_psi=0.0))
    over = {name for name, s in shifts.items() if s.psi > 0}
    assert over and not any(s.drifted for s in shifts.values())
    # With no test to pass, the same PSI is drift.
    loose = compare(reference, small, replace(LIMITS, max_psi=0.0, max_ks_pvalue=1e9))
    assert {name for name, s in loose.items() if s.drifted} == over


def test_the_drift_trend_plot_is_written(tmp_path):
    path = charts.drift_trend(
        ["v1", "v2", "v3"],
        {"rms_dbfs": [0.05, 3.2, None], "duration_s": [0.0, 4.1, 0.0]},
        [0.0, 0.6, None],
        (0.25, 0.1),
        tmp_path / "drift.png",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _row(settings, run_id):
    [row] = _query(settings, "SELECT * FROM drift_runs WHERE run_id = :r", r=run_id)
    return row


def _check_ood(settings, run_id, batch):
    """The stored share is the batch's share of assignments beyond the stored threshold, and that
    threshold is the quantile of the distances of the run's own tracks."""
    row = _row(settings, run_id)
    own = [
        d
        for (d,) in _query(
            settings,
            "SELECT distance FROM cluster_assignments WHERE run_id = :r "
            "AND assigned_by = 'recluster'",
            r=row.cluster_run_id,
        )
    ]
    assert row.ood_threshold == pytest.approx(np.quantile(own, LIMITS.ood_quantile), rel=1e-5)
    far = _query(
        settings,
        "SELECT count(*) FROM cluster_assignments WHERE run_id = :r AND track_id = ANY(:t) "
        "AND distance > :d",
        r=row.cluster_run_id,
        t=batch,
        d=row.ood_threshold,
    )[0][0]
    assert (row.ood_tracks, row.ood_share) == (far, pytest.approx(far / len(batch)))
    return row


def test_a_batch_built_to_differ_is_flagged_and_one_from_the_same_generator_is_not(
    settings, landing
):
    subset = landing / "MERGE_Bimodal_Balanced"
    # The first validation has no champion to compare with: no drift row.
    snapshot = _catalogue(settings, landing)
    assert _query(settings, "SELECT count(*) FROM drift_runs")[0][0] == 0
    first = _train_and_register(settings, snapshot, FAST)
    decide(settings, first, margin=0.01)
    run_recluster(settings, "recluster-1")
    reference = take_snapshot(settings)["n_tracks"]

    same = add_batch(subset, 24, 7, count=12, first_id=7001, shifted=False)
    run_ingest(settings, "ingest-same", str(landing))
    assert run_validation(settings, "validate-same").drifted_features == []
    row = _row(settings, "validate-same")
    assert (row.model_version, row.snapshot_id, row.batch_tracks) == (first, snapshot, 12)
    assert row.reference_tracks == reference
    assert set(row.features) == set(FEATURES)  # the sample has audio and lyrics throughout
    assert row.drifted_features == [] and row.ood_share is None
    assign_new_tracks(settings)
    quiet = _check_ood(settings, "validate-same", same)
    assert not quiet.drifted and drift_notice(settings.database_url) == {}

    shifted = add_batch(subset, 24, 7, count=12, first_id=7101, shifted=True)
    run_ingest(settings, "ingest-shifted", str(landing))
    result = run_validation(settings, "validate-shifted")
    assert set(result.drifted_features) == SHIFTED
    row = _row(settings, "validate-shifted")
    assert row.drifted and set(row.drifted_features) == SHIFTED
    assert all(row.features[f]["psi"] > LIMITS.max_psi for f in SHIFTED)
    assert max(row.features[f]["psi"] for f in set(FEATURES) - SHIFTED) < 1.0
    report = _query(
        settings, "SELECT report_key FROM data_quality_runs WHERE run_id = :r", r="validate-shifted"
    )[0][0]
    from musicvae.core.storage import ObjectStore

    page = ObjectStore(settings).get_bytes(report).decode()
    assert "Data drift:" in page and "rms_dbfs" in page
    assign_new_tracks(settings)
    loud = _check_ood(settings, "validate-shifted", shifted)
    assert loud.ood_share > max(LIMITS.max_ood_share, quiet.ood_share)
    # The Data quality page lists both runs' drift and draws the trend.
    from musicvae.ui.reports import drift_png, index_html

    listing = index_html(settings)
    assert "duration_s, rms_dbfs, peak" in listing and f"{loud.ood_share:.0%}" in listing
    assert drift_png(settings)[:8] == b"\x89PNG\r\n\x1a\n"

    # The form a user opens says so, naming the run and what moved ...
    notice = drift_notice(settings.database_url)["data_drift"]
    assert notice["enum"] == [notice["default"]]
    assert "validate-shifted" in notice["default"] and "rms_dbfs" in notice["default"]
    assert f"{loud.ood_share:.0%} of its tracks are out of distribution" in notice["default"]
    # ... until a model trained on that data is the champion.
    snapshot = take_snapshot(settings)["snapshot_id"]
    prepare_features(settings, snapshot)
    decide(settings, _train_and_register(settings, snapshot, FAST, run="retrain-2"), margin=1.0)
    assert drift_notice(settings.database_url) == {}
    # Unreachable catalogue: no notice, no error (the DAG file must still parse).
    assert drift_notice("postgresql+psycopg2://nobody@127.0.0.1:1/none") == {}
