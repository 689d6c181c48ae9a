"""Great Expectations suites over the track profiles and the metadata table, and their Data Docs.

Per-track decisions (quarantine) are made by musicvae.quality.validate with the same thresholds; the
suites look at the batch as a whole, give every run a Data Docs site users can read, and a row per
expectation for the expectation_results table. An expectation whose meta says
severity 'critical' fails the whole run when it fails.

GX runs in an ephemeral context over views of the catalogue database, so the batch is
validated where it is stored, not in this process's memory: nothing is kept on disk but the
Data Docs site, built into the folder the caller gives and uploaded by the caller.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from musicvae.ingest.merge import AUDIO_ID, LYRIC_ID, QUADRANTS
from musicvae.quality.thresholds import Thresholds

log = logging.getLogger("musicvae.quality.expectations")

CRITICAL, WARNING = "critical", "warning"
DOCS_SITE = "musicvae_data_docs"  # 'local_site' exists by default in GX


@dataclass(frozen=True)
class Outcome:
    """One expectation's result, as stored in expectation_results."""

    suite: str
    position: int
    expectation: str
    column_name: str | None
    kwargs: dict
    severity: str
    success: bool
    element_count: int | None
    unexpected_count: int | None
    unexpected_percent: float | None
    observed_value: object

    def describe(self) -> str:
        where = f"{self.suite}: {self.expectation}({self.column_name or _kwargs(self.kwargs)})"
        if self.expectation == "expect_column_to_exist":
            return f"{self.suite}: required column {self.column_name!r} is missing"
        if self.unexpected_count is not None:
            return f"{where}: {self.unexpected_count} of {self.element_count} rows unexpected"
        return f"{where}: observed {self.observed_value!r}"


def _kwargs(kwargs: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in kwargs.items())


def import_gx():
    """great_expectations, imported (seconds, the first time) with usage statistics off."""
    # No usage statistics leave the machine; GX reads this when it is imported.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    return gx


def profile_suite(limits: Thresholds) -> list[tuple[object, str]]:
    """Expectations over the track_profiles rows of one run (one row per track checked)."""
    e = import_gx().expectations
    from great_expectations.expectations.row_conditions import Column

    decoded = {"row_condition": Column("audio_decodable") == True}  # noqa: E712 - builds a condition
    return [
        (e.ExpectColumnValuesToNotBeNull(column="track_id"), CRITICAL),
        (e.ExpectColumnValuesToBeUnique(column="track_id"), CRITICAL),
        (e.ExpectColumnValuesToNotBeNull(column="sample_rate", **decoded), WARNING),
        (
            e.ExpectColumnValuesToBeBetween(column="sample_rate", min_value=limits.min_sample_rate),
            WARNING,
        ),
        (
            e.ExpectColumnValuesToBeBetween(
                column="duration_s",
                min_value=limits.min_duration_s,
                max_value=limits.max_duration_s,
            ),
            WARNING,
        ),
        (
            e.ExpectColumnValuesToBeBetween(
                column="clipped_fraction", min_value=0, max_value=limits.max_clipped_fraction
            ),
            WARNING,
        ),
        (e.ExpectColumnValuesToBeInSet(column="digital_silence", value_set=[False]), WARNING),
        *(
            (
                e.ExpectColumnValuesToBeBetween(
                    column=col, min_value=0, max_value=limits.max_edge_silence_s
                ),
                WARNING,
            )
            for col in ("leading_silence_s", "trailing_silence_s")
        ),
        (
            e.ExpectColumnValuesToBeBetween(
                column="lyrics_words", min_value=limits.min_lyrics_words
            ),
            WARNING,
        ),
        (
            e.ExpectColumnValuesToBeBetween(
                column="lyrics_chars", min_value=1, max_value=limits.max_lyrics_chars
            ),
            WARNING,
        ),
        (
            e.ExpectColumnValuesToBeBetween(
                column="lyrics_garbage_ratio", min_value=0, max_value=limits.max_garbage_ratio
            ),
            WARNING,
        ),
        (e.ExpectColumnValuesToBeInSet(column="lyrics_bom", value_set=[False]), WARNING),
        (
            e.ExpectColumnPairValuesToBeEqual(column_A="pairing", column_B="expected_pairing"),
            WARNING,
        ),
        (e.ExpectColumnValuesToBeNull(column="duplicate_of"), WARNING),
    ]


def metadata_suite(subset: str, limits: Thresholds) -> list[tuple[object, str]]:
    """Expectations over the metadata of every track of one MERGE subset, as ingested."""
    e = import_gx().expectations
    kind = subset.split("_")[0]
    ids = {"audio": {"Song": AUDIO_ID}, "lyrics": {"Song": LYRIC_ID}}.get(
        kind, {"Audio_Song": AUDIO_ID, "Lyric_Song": LYRIC_ID}
    )
    suite = [(e.ExpectColumnToExist(column=c), CRITICAL) for c in [*ids, *limits.required_columns]]
    suite += [
        (e.ExpectColumnValuesToMatchRegex(column=c, regex=p.pattern), CRITICAL)
        for c, p in ids.items()
    ]
    suite += [
        (e.ExpectColumnValuesToBeUnique(column="song_id"), CRITICAL),
        (e.ExpectColumnValuesToBeInSet(column="Quadrant", value_set=list(QUADRANTS)), WARNING),
        (e.ExpectColumnValuesToNotBeNull(column="Genres", mostly=limits.min_genre_rate), WARNING),
    ]
    if subset in limits.subset_rows:
        suite.append((e.ExpectTableRowCountToEqual(value=limits.subset_rows[subset]), WARNING))
    return suite


def columns(suite: list[tuple[object, str]]) -> list[str]:
    """The columns a suite's expectations read, in order."""
    names: list[str] = []
    for expectation, _ in suite:
        for attr in ("column", "column_A", "column_B"):
            name = getattr(expectation, attr, None)
            if name and name not in names:
                names.append(name)
    return names


def run_suites(
    database_url: str, batches: dict[str, tuple[str, list[tuple[object, str]]]], docs_dir: Path
) -> list[Outcome]:
    """Validate each named table or view of the database against its expectations; build the
    Data Docs in docs_dir."""
    gx = import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.add_data_docs_site(
        site_name=DOCS_SITE,
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    source = context.data_sources.add_postgres("musicvae", connection_string=database_url)
    outcomes: list[Outcome] = []
    for name, (table, expectations) in batches.items():
        asset = source.add_table_asset(name, table_name=table)
        suite = context.suites.add(gx.ExpectationSuite(name=name))
        for expectation, severity in expectations:
            expectation.meta = {**(expectation.meta or {}), "severity": severity}
            suite.add_expectation(expectation)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(
                name=name, data=asset.add_batch_definition_whole_table("batch"), suite=suite
            )
        )
        result = definition.run(result_format="SUMMARY")
        # On SQL, GX returns the results grouped by the metrics they share, not in suite order.
        position = {e.id: i for i, e in enumerate(suite.expectations)}
        outcomes += sorted(
            (_outcome(name, position[r.expectation_config.id], r) for r in result.results),
            key=lambda o: o.position,
        )
    context.build_data_docs(site_names=[DOCS_SITE])
    return outcomes


def _outcome(suite: str, position: int, r) -> Outcome:
    config = r.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    result = r.result or {}
    return Outcome(
        suite=suite,
        position=position,
        expectation=config.type,
        column_name=kwargs.get("column") or kwargs.get("column_A"),
        kwargs=_jsonable(kwargs),
        severity=(config.meta or {}).get("severity", WARNING),
        success=bool(r.success),
        element_count=result.get("element_count"),
        unexpected_count=result.get("unexpected_count"),
        unexpected_percent=result.get("unexpected_percent"),
        observed_value=_jsonable(result.get("observed_value")),
    )


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    return str(value)
