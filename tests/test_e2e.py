"""End to end: all four DAGs run through a real Airflow scheduler on a small sample catalogue."""

from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from musicvae import cli, db
from musicvae.airflow_client import AirflowClient, utcnow
from musicvae.demo import run_pipeline
from musicvae.sample import build_sample
from musicvae.stack import AIRFLOW_USER, Stack
from musicvae.storage import ObjectStore

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    # Started as the README tells a user to: MUSICVAE_LANDING at their download (here one
    # subset folder itself, as unzipped), then `musicvae stack up`.
    download = tmp_path_factory.mktemp("download")
    build_sample(download, tracks=24, seed=3, defects=True, progress=False)
    stack_dir = tmp_path_factory.mktemp("e2e-stack")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MUSICVAE_LANDING", str(download / "MERGE_Bimodal_Balanced"))
        assert cli.main(["stack", "up", "--stack-dir", str(stack_dir)]) == 0
    stack = Stack(stack_dir)
    try:
        client = AirflowClient(stack.api_url, AIRFLOW_USER, stack.airflow_password)
        runs = run_pipeline(client, {"epochs": 2, "n_clusters": 4, "seed": 1}, timeout=900)
        yield stack, client, runs
    finally:
        stack.down()


def _query(stack, sql):
    with db.engine(stack.database_url()).connect() as conn:
        return conn.execute(sa.text(sql)).all()


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
        assert client.task_states("merge_ingest", run_id) == {"ingest": "skipped"}
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
    from musicvae.airflow_client import AirflowError

    _, client, _ = pipeline
    (tmp_path / "notes.txt").write_text("not a MERGE download")
    run_id = client.trigger("merge_ingest", {"landing": str(tmp_path)})
    with pytest.raises(AirflowError, match="failed"):
        client.wait("merge_ingest", run_id, timeout=300)
    ingest = client.task_instance("merge_ingest", run_id, "ingest")
    # DEFAULT_ARGS allow 2 retries; a configuration error uses none of them.
    assert (ingest["state"], ingest["try_number"], ingest["max_tries"]) == ("failed", 1, 2)


def test_rerunning_a_recluster_run_replaces_only_its_own_rows(pipeline):
    from musicvae.recluster import run_recluster

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
    from musicvae.recluster import run_recluster

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
    from musicvae.airflow_client import AirflowError

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
