"""Settings from the environment and from Airflow Connections."""

from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from musicvae.core.config import Settings
from musicvae.core.errors import ConfigurationError


def test_missing_environment_says_what_to_set():
    with pytest.raises(ConfigurationError, match="MUSICVAE_DATABASE_URL is not set"):
        Settings.from_env({})


def test_settings_from_airflow_connections():
    catalogue = SimpleNamespace(
        host="postgres",
        port=5432,
        schema="catalogue",
        login="musicvae",
        password="p@ss/word:1",
        extra_dejson={},
    )
    s3 = SimpleNamespace(
        login="key", password="secret", extra_dejson={"endpoint_url": "https://minio:9000/"}
    )
    settings = Settings.from_connections(catalogue, s3, {"MUSICVAE_BUCKET": "music"})
    url = sa.make_url(settings.database_url)
    # A password with URL metacharacters survives the round trip.
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "musicvae",
        "p@ss/word:1",
        "postgres",
        5432,
        "catalogue",
    )
    assert (settings.s3_endpoint, settings.s3_secure, settings.bucket) == (
        "minio:9000",
        True,
        "music",
    )
    assert Settings.from_env(settings.as_env()) == settings


def test_an_s3_connection_without_endpoint_is_a_clear_error():
    conn = SimpleNamespace(host="h", port=None, schema="c", login="u", password="p")
    with pytest.raises(ConfigurationError, match="endpoint_url"):
        Settings.from_connections(
            conn, SimpleNamespace(login="k", password="s", extra_dejson={}), {}
        )


def test_a_landing_zone_that_is_not_a_folder_stops_stack_up_before_anything_starts(tmp_path):
    from musicvae.local.stack import Stack

    stack = Stack(tmp_path / "stack")
    with pytest.raises(ConfigurationError, match="MUSICVAE_LANDING='.*nope' is not a folder"):
        stack.up(landing=str(tmp_path / "nope"))
    assert not (tmp_path / "stack" / "pg").exists() and stack.status()["postgres"] == "stopped"


def test_index_build_memory_is_a_postgres_size():
    from musicvae.core.config import index_build_memory

    assert index_build_memory({}) == "1GB"
    assert index_build_memory({"MUSICVAE_INDEX_BUILD_MEMORY": "512MB"}) == "512MB"
    for bad in ("lots", "1 GB", "2gb", "-1MB"):
        with pytest.raises(ConfigurationError, match="MUSICVAE_INDEX_BUILD_MEMORY"):
            index_build_memory({"MUSICVAE_INDEX_BUILD_MEMORY": bad})
