"""Settings, read from the environment so that no secret lives in the repository.

The same variables configure the local stack (`musicvae stack up` writes them to
`.stack/env`), the Airflow workers and a docker compose deployment.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from musicvae.core.errors import ConfigurationError

DEFAULT_BUCKET = "musicvae"
# Tracks per shard of a mapped task (features, embedding): what one task holds in memory.
DEFAULT_SHARD_SIZE = 5000
# An embedding task spends about 3 s starting (a process, torch, the model) and 1.3 ms a track
# (musicnn features, 2 cores): at 5000 tracks a third of it would be start-up, which more workers
# pay again per shard. Its shards hold this many times MUSICVAE_SHARD_SIZE tracks.
EMBED_SHARDS_PER_SHARD = 4
# Above this many tracks the recluster fits MiniBatchKMeans on shard-sized batches instead of
# KMeans on every row at each step: its working memory follows the batch, not the catalogue.
DEFAULT_MINIBATCH_ABOVE = 200_000
# A model's evaluation report clusters this many tracks of its snapshot at most: Ward linkage
# and HDBSCAN grow with the square of the rows (Ward on 60,000 tracks wants 14 GB).
DEFAULT_EVALUATION_SAMPLE = 5000


def _count(name: str, default: int, env: dict[str, str] | None) -> int:
    value = (os.environ if env is None else env).get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ConfigurationError(f"{name}={value!r}: set a whole number of tracks, at least 1")
    return int(value)


def shard_size(env: dict[str, str] | None = None) -> int:
    """Tracks per shard: MUSICVAE_SHARD_SIZE, else DEFAULT_SHARD_SIZE."""
    return _count("MUSICVAE_SHARD_SIZE", DEFAULT_SHARD_SIZE, env)


def embed_shard_size(env: dict[str, str] | None = None) -> int:
    """Tracks per shard of the recluster's embedding: MUSICVAE_EMBED_SHARD_SIZE, else
    EMBED_SHARDS_PER_SHARD shards' worth."""
    return _count("MUSICVAE_EMBED_SHARD_SIZE", EMBED_SHARDS_PER_SHARD * shard_size(env), env)


def index_build_memory(env: dict[str, str] | None = None) -> str:
    """PostgreSQL's maintenance_work_mem while a recluster builds its HNSW index:
    MUSICVAE_INDEX_BUILD_MEMORY (e.g. 512MB, 2GB), else 1GB."""
    value = (os.environ if env is None else env).get("MUSICVAE_INDEX_BUILD_MEMORY", "").strip()
    if not value:
        return "1GB"
    if not re.fullmatch(r"\d+(kB|MB|GB)", value):
        raise ConfigurationError(
            f"MUSICVAE_INDEX_BUILD_MEMORY={value!r}: give a size such as 512MB or 2GB"
        )
    return value


def minibatch_above(env: dict[str, str] | None = None) -> int:
    """MUSICVAE_MINIBATCH_ABOVE, else DEFAULT_MINIBATCH_ABOVE."""
    return _count("MUSICVAE_MINIBATCH_ABOVE", DEFAULT_MINIBATCH_ABOVE, env)


def evaluation_sample(env: dict[str, str] | None = None) -> int:
    """MUSICVAE_EVALUATION_SAMPLE, else DEFAULT_EVALUATION_SAMPLE."""
    return _count("MUSICVAE_EVALUATION_SAMPLE", DEFAULT_EVALUATION_SAMPLE, env)


@dataclass(frozen=True)
class Settings:
    database_url: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    s3_secure: bool = False
    bucket: str = DEFAULT_BUCKET
    landing: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise ConfigurationError(
                    f"{name} is not set. Start the local stack with `musicvae stack up` and "
                    f"`source .stack/env`, or set it to your deployment's value."
                )
            return value

        return cls(
            database_url=required("MUSICVAE_DATABASE_URL"),
            s3_endpoint=required("MUSICVAE_S3_ENDPOINT"),
            s3_access_key=required("MUSICVAE_S3_ACCESS_KEY"),
            s3_secret_key=required("MUSICVAE_S3_SECRET_KEY"),
            s3_secure=env.get("MUSICVAE_S3_SECURE", "false").lower() in ("1", "true", "yes"),
            bucket=env.get("MUSICVAE_BUCKET", DEFAULT_BUCKET),
            landing=env.get("MUSICVAE_LANDING", ""),
        )

    @classmethod
    def from_connections(cls, catalogue, s3, env: dict[str, str] | None = None) -> Settings:
        """From Airflow Connections: `catalogue` a postgres one, `s3` an aws one whose extra
        holds `endpoint_url` (MinIO). Bucket and landing zone still come from the environment."""
        import sqlalchemy as sa

        env = os.environ if env is None else env
        endpoint = (s3.extra_dejson or {}).get("endpoint_url", "")
        if not endpoint:
            raise ConfigurationError(
                "the musicvae_s3 connection has no endpoint_url in its extra, e.g. "
                '{"endpoint_url": "http://minio:9000"}'
            )
        url = sa.URL.create(
            "postgresql+psycopg2",
            username=catalogue.login,
            password=catalogue.password,
            host=catalogue.host,
            port=catalogue.port or 5432,
            database=catalogue.schema,
        )
        return cls(
            database_url=url.render_as_string(hide_password=False),
            s3_endpoint=endpoint.split("://", 1)[-1].rstrip("/"),
            s3_access_key=s3.login,
            s3_secret_key=s3.password,
            s3_secure=endpoint.startswith("https://"),
            bucket=env.get("MUSICVAE_BUCKET", DEFAULT_BUCKET),
            landing=env.get("MUSICVAE_LANDING", ""),
        )

    def as_env(self) -> dict[str, str]:
        return {
            "MUSICVAE_DATABASE_URL": self.database_url,
            "MUSICVAE_S3_ENDPOINT": self.s3_endpoint,
            "MUSICVAE_S3_ACCESS_KEY": self.s3_access_key,
            "MUSICVAE_S3_SECRET_KEY": self.s3_secret_key,
            "MUSICVAE_S3_SECURE": str(self.s3_secure).lower(),
            "MUSICVAE_BUCKET": self.bucket,
            "MUSICVAE_LANDING": self.landing,
        }
