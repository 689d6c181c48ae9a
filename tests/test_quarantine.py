"""Releasing a quarantined track by hand, against the real database."""

import pytest
import sqlalchemy as sa

from musicvae.cli import main
from musicvae.core import db
from musicvae.ingest.run import run_ingest
from musicvae.quality.quarantine import ReleaseError, release
from musicvae.quality.validate import run_validation


def _track(settings, status: str) -> tuple[str, str]:
    with db.engine(settings.database_url).connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT track_id, status_reason FROM tracks WHERE status = :s ORDER BY track_id "
                "LIMIT 1"
            ),
            {"s": status},
        ).one()


def test_an_operator_releases_a_quarantined_track_with_a_reason(
    settings, landing, monkeypatch, capsys
):
    run_ingest(settings, "ingest", str(landing))
    run_validation(settings, "validate")
    track_id, why = _track(settings, "quarantined")
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)

    assert main(["release", track_id, "--reason", "checked by ear: it plays"]) == 0

    assert f"released {track_id}" in capsys.readouterr().out
    with db.engine(settings.database_url).connect() as conn:
        status = conn.execute(
            sa.text("SELECT status FROM tracks WHERE track_id = :t"), {"t": track_id}
        ).scalar()
        record = conn.execute(
            sa.text("SELECT reason, previous_reason FROM quarantine_releases WHERE track_id = :t"),
            {"t": track_id},
        ).one()
    assert status == "valid"
    assert record == ("checked by ear: it plays", why)


def test_release_refuses_what_it_cannot_do(settings, landing):
    run_ingest(settings, "ingest", str(landing))
    run_validation(settings, "validate")
    valid, _ = _track(settings, "valid")
    quarantined, _ = _track(settings, "quarantined")
    with pytest.raises(ReleaseError, match="give a reason"):
        release(settings, quarantined, "  ")
    with pytest.raises(ReleaseError, match="not quarantined"):
        release(settings, valid, "because")
    with pytest.raises(ReleaseError, match="no track"):
        release(settings, "bimodal_balanced/A999", "because")
    with db.engine(settings.database_url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM quarantine_releases")).scalar() == 0
