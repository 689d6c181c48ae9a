"""Lineage records named as OpenLineage names datasets, and the extractor that hands them to the
OpenLineage provider. The events a real pipeline emits: tests/test_e2e.py."""

from dataclasses import replace

from musicvae.core import lineage
from musicvae.core.config import Settings

SETTINGS = Settings(
    database_url="postgresql+psycopg2://u:p@db.example:6543/catalogue",
    s3_endpoint="127.0.0.1:9000",
    s3_access_key="a",
    s3_secret_key="s",
    bucket="music",
)


def test_datasets_follow_the_openlineage_naming_spec(tmp_path):
    assert lineage.table(SETTINGS, "tracks") == lineage.Dataset(
        "postgres://db.example:6543", "catalogue.public.tracks"
    )
    default_port = replace(SETTINGS, database_url="postgresql://u@localhost/cat")
    assert lineage.table(default_port, "clusters").namespace == "postgres://localhost:5432"
    assert lineage.objects(SETTINGS, "models/abc/") == lineage.Dataset("s3://music", "models/abc")
    assert lineage.landing("s3://drop/merge/") == lineage.Dataset("s3://drop", "merge")
    (tmp_path / "merge").mkdir()
    relative = tmp_path / "merge" / ".." / "merge"
    assert lineage.landing(str(relative)) == lineage.Dataset("file", str(tmp_path / "merge"))


def test_a_record_is_taken_once_and_keeps_each_dataset_once():
    lineage.take()
    tracks = lineage.table(SETTINGS, "tracks")
    lineage.read(tracks, tracks)
    lineage.wrote(lineage.objects(SETTINGS, "raw"))
    lineage.facts(model_version=3, snapshot_id=None)
    record = lineage.take()
    assert record.inputs == [tracks] and record.outputs == [lineage.objects(SETTINGS, "raw")]
    assert record.facts == {"model_version": 3}
    assert lineage.take() == lineage.Record()


def test_the_extractor_hands_the_record_to_openlineage_with_a_musicvae_facet():
    from openlineage.client.serde import Serde

    from musicvae.core.code_version import code_version
    from musicvae.core.lineage_extractor import TaskFlowExtractor

    lineage.take()
    lineage.read(lineage.table(SETTINGS, "tracks"))
    lineage.wrote(lineage.objects(SETTINGS, "snapshots/s1.json"))
    lineage.facts(snapshot_id="s1", data_quality={"status": "passed"})
    assert TaskFlowExtractor.get_operator_classnames() == ["_PythonDecoratedOperator"]
    found = TaskFlowExtractor(operator=None).extract_on_complete(task_instance=None)
    assert [(d.namespace, d.name) for d in found.inputs] == [
        ("postgres://db.example:6543", "catalogue.public.tracks")
    ]
    assert [(d.namespace, d.name) for d in found.outputs] == [("s3://music", "snapshots/s1.json")]
    facet = Serde.to_dict(found.run_facets["musicvae"])
    assert facet["code_version"] == code_version() and facet["snapshot_id"] == "s1"
    assert facet["data_quality"] == {"status": "passed"} and "model_version" not in facet
    # What it took is gone: the next task in this process starts empty.
    assert TaskFlowExtractor(operator=None).extract_on_complete(None).inputs == []
