"""OpenLineage for musicvae's TaskFlow tasks: the provider calls this extractor when a task ends,
and it hands over what the task reported to `musicvae.core.lineage`, with a `musicvae` run facet.

Configured with `[openlineage] extractors = musicvae.core.lineage_extractor.TaskFlowExtractor` (the
local stack and the compose deployment set it).
"""

from __future__ import annotations

import attr
from airflow.providers.openlineage.extractors.base import BaseExtractor, OperatorLineage
from openlineage.client.event_v2 import Dataset
from openlineage.client.generated.base import RunFacet

from musicvae.core import lineage
from musicvae.core.code_version import code_version


@attr.define
class MusicvaeRunFacet(RunFacet):
    """Which code ran, and which model version, training snapshot or data-quality run it was."""

    code_version: str
    model_version: int | None = None
    snapshot_id: str | None = None
    data_quality: dict | None = None

    @staticmethod
    def _get_schema() -> str:
        return "urn:musicvae:facet:MusicvaeRunFacet:1"


class TaskFlowExtractor(BaseExtractor):
    @classmethod
    def get_operator_classnames(cls) -> list[str]:
        return ["_PythonDecoratedOperator"]

    def _execute_extraction(self) -> OperatorLineage | None:
        return None  # at the start nothing is known; the task reports as it runs

    def extract_on_complete(self, task_instance) -> OperatorLineage:
        record = lineage.take()
        return OperatorLineage(
            inputs=[Dataset(namespace=d.namespace, name=d.name) for d in record.inputs],
            outputs=[Dataset(namespace=d.namespace, name=d.name) for d in record.outputs],
            run_facets={"musicvae": MusicvaeRunFacet(code_version=code_version(), **record.facts)},
        )
