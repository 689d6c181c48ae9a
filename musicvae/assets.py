"""Assets that chain the musicvae DAGs and defaults they share (imported by DAG files only)."""

import os
from contextlib import contextmanager
from datetime import timedelta

from airflow.sdk import Asset, CronTriggerTimetable

CATALOGUE_RAW = Asset(name="catalogue.raw", uri="musicvae://catalogue/raw")
CATALOGUE_VALIDATED = Asset(name="catalogue.validated", uri="musicvae://catalogue/validated")
MODEL_CHAMPION = Asset(name="model.champion", uri="musicvae://model/champion")


def cron(expression: str) -> CronTriggerTimetable:
    """A cron schedule in UTC whose runs start at the slot time (not at the end of an interval)."""
    return CronTriggerTimetable(expression, timezone="UTC")


def ingest_schedule() -> CronTriggerTimetable | None:
    """merge_ingest's schedule: MUSICVAE_INGEST_SCHEDULE, a cron expression (default @hourly), or
    `manual` for triggered runs only (a benchmark's timed run must not share the workers with a
    scheduled one). Read when the DAG file is parsed."""
    from airflow.sdk.exceptions import AirflowTimetableInvalid

    from musicvae.core.errors import ConfigurationError

    value = os.environ.get("MUSICVAE_INGEST_SCHEDULE", "").strip() or "@hourly"
    if value == "manual":
        return None
    timetable = cron(value)
    try:
        timetable.validate()
    except AirflowTimetableInvalid as e:
        raise ConfigurationError(
            f"MUSICVAE_INGEST_SCHEDULE={value!r}: {e} Give a cron expression (@hourly, "
            "'0 */6 * * *') or manual."
        ) from e
    return timetable


DEFAULT_ARGS = {"owner": "musicvae", "retries": 2, "retry_delay": timedelta(seconds=20)}


def settings():
    """Settings for task code, read when a task runs (not when the DAG file is parsed).

    MUSICVAE_* environment variables when they are set (the local stack); otherwise the Airflow
    Connections `musicvae_catalogue` and `musicvae_s3` (the compose deployment creates both).
    """
    from musicvae.core.config import Settings

    if os.environ.get("MUSICVAE_DATABASE_URL"):
        return Settings.from_env()
    from airflow.sdk import Connection

    return Settings.from_connections(
        Connection.get("musicvae_catalogue"), Connection.get("musicvae_s3")
    )


@contextmanager
def fail_fast():
    """Errors that a retry cannot fix (configuration, landing zone, metadata schema, a failed
    batch) fail the task at once instead of after every retry delay; errors of the servers
    (a refused connection, a timeout) pass through and keep their retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from musicvae.core.errors import PermanentError

    try:
        yield
    except PermanentError as e:
        raise AirflowFailException(f"{type(e).__name__}: {e}") from e
