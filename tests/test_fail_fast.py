"""Which errors fail an Airflow task at once, and which keep the task's retries."""

import socket

import psycopg2
import pytest
import sqlalchemy as sa
from airflow.sdk.exceptions import AirflowFailException

from musicvae.assets import fail_fast
from musicvae.core.config import Settings
from musicvae.core.errors import BatchValidationError, ModelNotFoundError
from musicvae.ingest.landing import Landing
from musicvae.registry.snapshots import NotEnoughDataError
from musicvae.retrain.form import resolve


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _not_a_merge_folder(tmp_path, scan):
    (tmp_path / "notes.txt").write_text("not MERGE")
    scan(Landing.open(str(tmp_path)))


def _missing_column(tmp_path, scan):
    folder = tmp_path / "MERGE_Audio_Complete"
    folder.mkdir()
    (folder / "merge_audio_complete_metadata.csv").write_text("Song,Genres\nA001,Pop\n")
    scan(Landing.open(str(tmp_path)))


def _raise(error):
    def go(_tmp_path, _scan):
        raise error

    return go


# Each raises the real error of its layer: the settings, the landing zone, the metadata schema,
# the retrain form, and the kinds the stages raise for a failed batch or an empty catalogue.
PERMANENT = {
    "ConfigurationError: MUSICVAE_DATABASE_URL": lambda *_: Settings.from_env({}),
    "ConfigurationError: invalid retrain parameters": lambda *_: resolve({"epochs": 0}),
    "CatalogueError: no MERGE subset folder": _not_a_merge_folder,
    "MetadataSchemaError: .*Quadrant": _missing_column,
    "BatchValidationError": _raise(BatchValidationError("no valid track")),
    "NotEnoughDataError": _raise(NotEnoughDataError("3 valid tracks")),
    "ModelNotFoundError": _raise(ModelNotFoundError("no champion")),
}


@pytest.mark.parametrize("expected", PERMANENT)
def test_errors_a_retry_cannot_fix_fail_the_task_at_once(expected, tmp_path, scan):
    with pytest.raises(AirflowFailException, match=expected), fail_fast():
        PERMANENT[expected](tmp_path, scan)


def test_server_errors_pass_through_and_keep_their_retries():
    port = _closed_port()
    with pytest.raises(psycopg2.OperationalError), fail_fast():
        psycopg2.connect(host="127.0.0.1", port=port, connect_timeout=2)
    url = f"postgresql+psycopg2://u:p@127.0.0.1:{port}/db"
    with pytest.raises(sa.exc.OperationalError), fail_fast():
        sa.create_engine(url).connect()
    with pytest.raises(ConnectionRefusedError), fail_fast():
        socket.create_connection(("127.0.0.1", port), timeout=2)
    with pytest.raises(TimeoutError), fail_fast():
        raise TimeoutError("the S3 server did not answer")
