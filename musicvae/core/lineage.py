"""What each step read and wrote, named as OpenLineage names datasets, and the facts that say
which run of which model it was.

Every pipeline function reports here as it goes (`read`, `wrote`, `facts`); outside Airflow the
record is simply dropped. Inside Airflow, the OpenLineage provider asks
`musicvae.core.lineage_extractor` for each finished task's lineage, and that takes this record.

Dataset names follow the OpenLineage naming spec: a PostgreSQL table is
`postgres://host:port` + `database.schema.table`, an object-store prefix `s3://bucket` + the
prefix, a local landing folder `file` + its absolute path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from musicvae.core.config import Settings

SCHEMA = "public"


@dataclass(frozen=True)
class Dataset:
    namespace: str
    name: str


@dataclass
class Record:
    inputs: list[Dataset] = field(default_factory=list)
    outputs: list[Dataset] = field(default_factory=list)
    facts: dict = field(default_factory=dict)


# One task runs in one process: what it reports is that task's.
_current = Record()


def read(*datasets: Dataset) -> None:
    _current.inputs.extend(d for d in datasets if d not in _current.inputs)


def wrote(*datasets: Dataset) -> None:
    _current.outputs.extend(d for d in datasets if d not in _current.outputs)


def facts(
    *,
    model_version: int | None = None,
    snapshot_id: str | None = None,
    data_quality: dict | None = None,
) -> None:
    """Which model version, training snapshot or data-quality result this step worked on."""
    given = {
        "model_version": model_version,
        "snapshot_id": snapshot_id,
        "data_quality": data_quality,
    }
    _current.facts.update({k: v for k, v in given.items() if v is not None})


def take() -> Record:
    """The record so far, and a fresh one for whatever runs next in this process."""
    global _current
    record, _current = _current, Record()
    return record


def table(settings: Settings, name: str) -> Dataset:
    url = urlsplit(settings.database_url)
    return Dataset(
        f"postgres://{url.hostname}:{url.port or 5432}",
        f"{url.path.lstrip('/')}.{SCHEMA}.{name}",
    )


def tables(settings: Settings, *names: str) -> list[Dataset]:
    return [table(settings, n) for n in names]


def objects(settings: Settings, prefix: str) -> Dataset:
    return Dataset(f"s3://{settings.bucket}", prefix.rstrip("/"))


def landing(uri: str) -> Dataset:
    """The landing zone: a local folder, or an s3:// prefix."""
    if uri.startswith("s3://"):
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        return Dataset(f"s3://{bucket}", prefix.rstrip("/"))
    return Dataset("file", str(Path(uri).resolve()))
