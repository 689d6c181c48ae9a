"""Releasing a quarantined track by hand, with the reason on record."""

from __future__ import annotations

import getpass
import logging

import sqlalchemy as sa

from musicvae.core import db
from musicvae.core.config import Settings
from musicvae.core.errors import MusicVAEError

log = logging.getLogger("musicvae.quality.quarantine")


class ReleaseError(MusicVAEError):
    """The track cannot be released: unknown, not quarantined, or no reason was given."""


def release(settings: Settings, track_id: str, reason: str, operator: str | None = None) -> dict:
    """Mark a quarantined track valid; the next recluster (or assignment) includes it."""
    if not reason.strip():
        raise ReleaseError("give a reason: it is kept with the release for later readers")
    eng = db.engine(settings.database_url)
    db.migrate(eng)
    operator = operator or getpass.getuser()
    with eng.begin() as conn:
        row = conn.execute(
            sa.text("SELECT status, status_reason FROM tracks WHERE track_id = :t FOR UPDATE"),
            {"t": track_id},
        ).first()
        if row is None:
            raise ReleaseError(f"no track {track_id!r}; ids look like 'bimodal_balanced/A001'")
        if row.status != "quarantined":
            raise ReleaseError(f"{track_id} is {row.status}, not quarantined: nothing to release")
        conn.execute(
            sa.text(
                "INSERT INTO quarantine_releases (track_id, released_by, reason, previous_reason) "
                "VALUES (:t, :by, :why, :was)"
            ),
            {"t": track_id, "by": operator, "why": reason.strip(), "was": row.status_reason},
        )
        conn.execute(
            sa.text(
                "UPDATE tracks SET status = 'valid', status_reason = :why, updated_at = now() "
                "WHERE track_id = :t"
            ),
            {"t": track_id, "why": f"released by {operator}: {reason}"},
        )
    log.info("released %s (%s): %s", track_id, row.status_reason, reason)
    return {"track_id": track_id, "released_by": operator, "previous_reason": row.status_reason}
