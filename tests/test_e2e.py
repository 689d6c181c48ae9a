"""End to end: all four DAGs run through a real Airflow scheduler on a small sample catalogue."""

import json
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from musicvae import cli
from musicvae.core import db
from musicvae.core.storage import ObjectStore
from musicvae.local.airflow_client import AirflowClient, utcnow
from musicvae.local.demo import run_pipeline
from musicvae.local.sample.layout import build_sample
from musicvae.local.servers.airflow import AIRFLOW_USER
from musicvae.local.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, stack_dir):
    # Started as the README tells a user to: MUSICVAE_LANDING at their download (here one
    # subset folder itself, as unzipped), then `musicvae stack up`.
    download = tmp_path_factory.mktemp("download")
    build_sample(download, tracks=24, seed=3, defects=True, progress=False)
    folder = stack_dir("e2e-stack")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MUSICVAE_LANDING", str(download / "MERGE_Bimodal_Balanced"))
        assert cli.main(["stack", "up", "--stack-dir", str(folder)]) == 0
    stack = Stack(folder)
    try:
        client = AirflowClient(stack.api_url, AIRFLOW_USER, stack.airflow_password)
        runs = run_pipeline(client, {"epochs": 2, "n_clusters": 4, "seed": 1}, timeout=900)
        yield stack, client, runs
    finally:
        stack.down()


def _query(stack, sql, **params):
    with db.engine(stack.database_url()).connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def test_the_asset_chain_ran_every_dag(pipeline):
    _, client, runs = pipeline
    assert set(runs.runs) == {
        "merge_ingest",
        "merge_validate",
        "catalogue_assign",
        "musicvae_retrain",
        "catalogue_recluster",
    }
    # Before the first model there is nothing to assign to: the task says so and skips.
    assert client.task_states("catalogue_assign", runs.runs["catalogue_assign"]) == {
        "assign": "skipped"
    }
    assert runs.runs["merge_validate"].startswith("asset_triggered__")
    assert runs.runs["catalogue_recluster"].startswith("asset_triggered__")


def test_every_valid_track_has_exactly_one_current_assignment(pipeline):
    stack, _, _ = pipeline
    counts = _query(
        stack,
        """
        SELECT t.track_id, count(a.track_id) FROM tracks t
        LEFT JOIN current_cluster_assignments a USING (track_id)
        WHERE t.status = 'valid' GROUP BY t.track_id""",
    )
    assert len(counts) == 25  # 24 good tracks + the one with Latin-1 lyrics
    assert {n for _, n in counts} == {1}


def test_quarantined_tracks_have_no_assignment(pipeline):
    stack, _, _ = pipeline
    quarantined = _query(
        stack, "SELECT track_id, status_reason FROM tracks WHERE status = 'quarantined'"
    )
    assert len(quarantined) == 3 and all(reason for _, reason in quarantined)
    leaked = _query(
        stack,
        """
        SELECT a.track_id FROM cluster_assignments a JOIN tracks t USING (track_id)
        WHERE t.status <> 'valid'""",
    )
    assert leaked == []


def test_the_model_version_records_the_form_parameters_and_lineage(pipeline):
    stack, _, runs = pipeline
    [(params, n_tracks, dag_run, snapshot, code)] = _query(
        stack, "SELECT params, n_tracks, dag_run_id, snapshot_id, code_version FROM model_versions"
    )
    assert (params["epochs"], params["n_clusters"], params["seed"]) == (2, 4, 1)
    assert n_tracks == 25 and dag_run == runs.runs["musicvae_retrain"]
    assert snapshot and code
    sizes = _query(stack, "SELECT count(*) FROM clusters")
    assert sizes == [(4,)]
    dims = _query(stack, "SELECT DISTINCT vector_dims(embedding) FROM track_embeddings")
    assert dims == [(params["latent_dim"],)]


def test_a_second_ingest_run_changes_nothing(pipeline):
    stack, client, _ = pipeline
    store = ObjectStore(stack.settings())

    def state():
        return (
            _query(stack, "SELECT track_id, status, updated_at FROM tracks ORDER BY 1"),
            _query(stack, "SELECT * FROM ingest_runs ORDER BY 1"),
            _query(stack, "SELECT count(*) FROM data_quality_runs"),
            sorted(store.list_keys("raw/")),
        )

    before = state()
    # Again, then through the folder that holds the subset folder: the same tracks either way.
    for conf in ({}, {"landing": str(Path(stack.landing).parent)}):
        since = utcnow()
        run_id = client.trigger("merge_ingest", conf)
        client.wait("merge_ingest", run_id, timeout=300)
        assert client.task_states("merge_ingest", run_id) == {
            "shards": "success",
            "upload": "success",
            "ingest": "skipped",
        }
        assert client.triggered_runs("merge_ingest", since, run_id) == []
        assert state() == before


def test_the_landing_zone_given_to_stack_up_is_the_one_the_dags_read(pipeline):
    stack, _, _ = pipeline
    landing = stack.landing
    assert landing.endswith("MERGE_Bimodal_Balanced") and not landing.startswith(str(stack.root))
    assert f"export MUSICVAE_LANDING={landing}\n" in (stack.root / "env").read_text()
    assert Stack(stack.root).status()["landing zone"] == landing
    # Recorded by the ingest task that Airflow's worker ran with no landing parameter.
    assert _query(stack, "SELECT DISTINCT landing FROM ingest_runs") == [(landing,)]


def test_a_landing_zone_error_fails_the_run_at_once_without_retries(pipeline, tmp_path):
    from musicvae.local.airflow_client import AirflowError

    _, client, _ = pipeline
    (tmp_path / "notes.txt").write_text("not a MERGE download")
    run_id = client.trigger("merge_ingest", {"landing": str(tmp_path)})
    # The error names the task and its cause, read from the task's log.
    with pytest.raises(AirflowError, match="failed .*shards: CatalogueError: no MERGE subset"):
        client.wait("merge_ingest", run_id, timeout=300)
    # The first task reads the landing zone. DEFAULT_ARGS allow 2 retries; a configuration
    # error uses none of them, and nothing after it runs.
    plan = client.task_instance("merge_ingest", run_id, "shards")
    assert (plan["state"], plan["try_number"], plan["max_tries"]) == ("failed", 1, 2)
    assert client.task_states("merge_ingest", run_id)["ingest"] == "upstream_failed"


def test_rerunning_a_recluster_run_replaces_only_its_own_rows(pipeline):
    from musicvae.catalogue.recluster import run_recluster

    stack, _, runs = pipeline
    run_id = runs.runs["catalogue_recluster"]

    def rows():
        return _query(stack, "SELECT run_id, count(*) FROM cluster_assignments GROUP BY 1")

    before = rows()
    run_recluster(stack.settings(), run_id)
    assert rows() == before


def test_the_ui_serves_the_latest_data_quality_report_behind_its_login(pipeline):
    stack, client, runs = pipeline
    url = f"{stack.api_url}/musicvae/data-quality/latest"
    assert requests.get(url, timeout=30).status_code == 401
    report = client.session.get(url, timeout=30)
    assert report.status_code == 200
    assert runs.runs["merge_validate"] in report.text and "25 valid" in report.text
    index = client.session.get(f"{stack.api_url}/musicvae/data-quality/", timeout=30)
    assert "Latest report" in index.text
    plugins = client._call("GET", "/plugins")["plugins"]
    views = [v for p in plugins for v in p["external_views"]]
    assert {"name": "Data quality", "href": "musicvae/data-quality/latest"}.items() <= views[
        0
    ].items()
    assert {"name": "Clusters", "href": "musicvae/clusters/"}.items() <= views[1].items()


def test_the_ui_serves_the_clusters_and_their_churn_behind_its_login(pipeline):
    from musicvae.catalogue.recluster import run_recluster

    stack, client, runs = pipeline
    url = f"{stack.api_url}/musicvae/clusters/"
    assert requests.get(url, timeout=30).status_code == 401
    page = client.session.get(url, timeout=30)
    assert page.status_code == 200 and runs.runs["catalogue_recluster"] in page.text
    # A second run of the same model: compared with the first, it moved nothing.
    run_recluster(stack.settings(), "e2e-second-run")
    page = client.session.get(url, timeout=30).text
    assert "e2e-second-run" in page and "0 of 25 (0.0%)" in page
    plot = client.session.get(f"{url}runs/e2e-second-run/flows.png", timeout=60)
    assert plot.status_code == 200 and plot.content[:4] == b"\x89PNG"
    assert requests.get(f"{url}runs/e2e-second-run/flows.png", timeout=30).status_code == 401


def test_the_model_version_is_champion_and_its_evaluation_is_served_in_the_ui(pipeline):
    stack, client, _ = pipeline
    [(version, promotion)] = _query(stack, "SELECT version, promotion FROM model_versions")
    assert promotion["promoted"]
    assert _query(stack, "SELECT alias, version FROM model_aliases") == [("champion", version)]
    page = client.session.get(f"{stack.api_url}/musicvae/models/{version}/", timeout=60)
    assert page.status_code == 200
    assert f"Model version {version}" in page.text and "hybrid VAE" in page.text
    png = client.session.get(
        f"{stack.api_url}/musicvae/models/{version}/files/latent_map.png", timeout=60
    )
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    assert (
        client.session.get(
            f"{stack.api_url}/musicvae/models/{version}/files/..%2Fmodel.pt", timeout=60
        ).status_code
        == 404
    )
    assert (
        requests.get(f"{stack.api_url}/musicvae/models/{version}/", timeout=60).status_code == 401
    )


def test_the_retrain_form_refuses_bad_values_and_a_dry_run_trains_nothing(pipeline):
    from musicvae.local.airflow_client import AirflowError

    stack, client, _ = pipeline
    for bad in ({"epochs": 0}, {"beta": -1}, {"batch_size": "many"}):
        with pytest.raises(AirflowError, match="HTTP 400"):
            client.trigger("musicvae_retrain", bad)
    versions = _query(stack, "SELECT count(*) FROM model_versions")
    run_id = client.trigger("musicvae_retrain", {"dry_run": True, "epochs": 7})
    client.wait("musicvae_retrain", run_id, timeout=600)
    states = client.task_states("musicvae_retrain", run_id)
    assert states["snapshot"] == states["features"] == "success"
    assert states["train"] == "skipped" and states["register"] == "skipped"
    assert _query(stack, "SELECT count(*) FROM model_versions") == versions


WRITING_RETRAIN_TASKS = ("snapshot", "features", "train", "register", "evaluate", "promote")


def _lineage(stack) -> list[dict]:
    """The COMPLETE events the stack's file transport wrote, one file each."""
    events = [json.loads(p.read_text()) for p in stack.lineage_dir.glob("events-*.json")]
    return [e for e in events if e["eventType"] == "COMPLETE"]


def _downstream(events: list[dict], start: tuple[str, str]) -> dict[tuple, list[str]]:
    """Every dataset a chain of tasks leads to from `start`, with the jobs on the way."""
    paths, todo = {start: []}, [start]
    while todo:
        here = todo.pop()
        for e in events:
            if here in {(d["namespace"], d["name"]) for d in e["inputs"]}:
                for out in ((d["namespace"], d["name"]) for d in e["outputs"]):
                    if out not in paths:
                        paths[out] = [*paths[here], e["job"]["name"]]
                        todo.append(out)
    return paths


def test_lineage_events_chain_a_landing_file_to_the_cluster_assignments(pipeline):
    stack, _, runs = pipeline
    events = _lineage(stack)
    landing = Path(stack.landing).resolve()
    a_file = next(landing.rglob("*.mp3"))
    start = ("file", str(landing))
    assert a_file.is_relative_to(start[1])
    reached = _downstream(events, start)
    # Landing -> ingest -> tracks -> snapshot -> train -> the model's artifacts ...
    [train] = [e for e in events if e["job"]["name"] == "musicvae_retrain.train" and e["outputs"]]
    [model] = [(d["namespace"], d["name"]) for d in train["outputs"]]
    assert model[1].startswith("models/")

    def names(e: dict, side: str) -> set[tuple[str, str]]:
        return {(d["namespace"], d["name"]) for d in e[side]}

    [frozen] = {
        out
        for e in events
        if e["job"]["name"] == "musicvae_retrain.snapshot"
        for out in names(e, "outputs") & names(train, "inputs")
    }
    assert reached[frozen] == ["merge_ingest.ingest", "musicvae_retrain.snapshot"]
    assert model in reached and reached[model][-1] == "musicvae_retrain.train"
    # (and what the features task wrote is among what train read)
    features = next(e for e in events if e["job"]["name"] == "musicvae_retrain.features")
    assert {(d["namespace"], d["name"]) for d in features["outputs"]} <= {
        (d["namespace"], d["name"]) for d in train["inputs"]
    }

    # ... which the recluster's mapped tasks embedded its shards with, and the recluster read
    # those to write the cluster assignments.
    embedded = next(
        e
        for e in events
        if e["job"]["name"] == "catalogue_recluster.embed" and model in names(e, "inputs")
    )
    [shards] = names(embedded, "outputs")
    assert shards[1].startswith("recluster/") and shards in reached
    recluster = next(
        e
        for e in events
        if e["job"]["name"] == "catalogue_recluster.recluster" and shards in names(e, "inputs")
    )
    [assignments] = [
        (d["namespace"], d["name"])
        for d in recluster["outputs"]
        if d["name"].endswith(".public.cluster_assignments")
    ]
    assert assignments in reached and assignments[0].startswith("postgres://127.0.0.1:")
    # The recluster's event names the model version it clustered with, and the code.
    [(version,)] = _query(
        stack,
        "SELECT model_version FROM cluster_runs WHERE run_id = :r",
        r=runs.runs["catalogue_recluster"],
    )
    facet = recluster["run"]["facets"]["musicvae"]
    assert facet["model_version"] == version and facet["code_version"]
    # Every task that writes data says what; validation adds its data-quality result.
    writers = {e["job"]["name"] for e in events if e["outputs"]}
    assert writers >= {f"musicvae_retrain.{t}" for t in WRITING_RETRAIN_TASKS}
    assert writers >= {"merge_ingest.ingest", "merge_validate.validate"}
    validate = [e for e in events if e["job"]["name"] == "merge_validate.validate"]
    assert validate[0]["run"]["facets"]["musicvae"]["data_quality"]["status"] == "passed"


REVIEWER_DELAY_S = 10
# A retrain that passes the gate whatever it scores, and asks a person before it is promoted.
REVIEWED = {"epochs": 2, "n_clusters": 4, "promotion_margin": 1.0, "require_approval": True}


def _champion(stack) -> int:
    return _query(stack, "SELECT version FROM model_aliases WHERE alias = 'champion'")[0][0]


def _awaiting_review(client, conf: dict) -> str:
    run_id = client.trigger("musicvae_retrain", {**REVIEWED, **conf})
    client.wait_for_task("musicvae_retrain", run_id, "review", "awaiting_input")
    # A person answers seconds later, not within the one second in which Airflow 3.3.2's
    # scheduler still takes the report of the parked workload: an answer that beats it makes
    # the scheduler count that report as a failure and retry the task, asking again.
    time.sleep(REVIEWER_DELAY_S)
    return run_id


def _promotion(stack, run_id: str) -> dict:
    [(promotion,)] = _query(
        stack, "SELECT promotion FROM model_versions WHERE dag_run_id = :r", r=run_id
    )
    return promotion


def test_an_approved_version_becomes_champion_and_the_catalogue_is_reclustered(pipeline):
    stack, client, _ = pipeline
    before = _champion(stack)
    run_id = _awaiting_review(client, {"seed": 21})
    # Nothing is promoted while the request waits.
    assert _champion(stack) == before
    detail = client.hitl_detail("musicvae_retrain", run_id, "review")
    assert detail["options"] == ["Approve", "Reject"] and detail["defaults"] == ["Reject"]
    assert "| candidate, version" in detail["body"] and "/musicvae/models/" in detail["body"]
    since = utcnow()
    client.respond("musicvae_retrain", run_id, "review", "Approve", {"reason": "looks right"})
    client.wait("musicvae_retrain", run_id, timeout=600)
    promotion = _promotion(stack, run_id)
    assert promotion["promoted"] and promotion["approval"]["by"] == AIRFLOW_USER
    assert promotion["approval"]["reason"] == "looks right"
    assert _champion(stack) != before
    [(dag_id, recluster)] = client.triggered_runs("musicvae_retrain", since, run_id)
    assert dag_id == "catalogue_recluster"
    client.wait(dag_id, recluster, timeout=600)


def test_a_rejected_version_is_recorded_with_its_reviewer_and_the_champion_stays(pipeline):
    stack, client, _ = pipeline
    before = _champion(stack)
    run_id = _awaiting_review(client, {"seed": 22})
    client.respond("musicvae_retrain", run_id, "review", "Reject", {"reason": "too noisy"})
    client.wait("musicvae_retrain", run_id, timeout=600)
    assert client.task_states("musicvae_retrain", run_id)["promote"] == "skipped"
    promotion = _promotion(stack, run_id)
    assert not promotion["promoted"]
    assert promotion["reason"] == f"kept the champion: rejected by {AIRFLOW_USER}: too noisy"
    assert _champion(stack) == before


def test_an_unanswered_request_times_out_as_a_rejection(pipeline):
    stack, client, _ = pipeline
    before = _champion(stack)
    run_id = _awaiting_review(client, {"seed": 23, "approval_timeout_hours": 0.003})  # 11 s
    client.wait("musicvae_retrain", run_id, timeout=600)
    promotion = _promotion(stack, run_id)
    assert not promotion["promoted"] and promotion["approval"]["by"] is None
    assert promotion["reason"] == "kept the champion: no approval within 0.003 h"
    assert _champion(stack) == before
