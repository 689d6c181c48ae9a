"""DAG integrity: every DAG imports, is tagged, retries, parses fast and imports nothing heavy."""

import json
import os
import subprocess
import sys

import pytest

from .conftest import REPO

DAG_DIR = REPO / "dags"
DAG_FILES = sorted(DAG_DIR.glob("*.py"))
INGEST = DAG_DIR / "merge_ingest.py"
EXPECTED = {
    "merge_ingest",
    "merge_validate",
    "musicvae_retrain",
    "catalogue_recluster",
    "catalogue_assign",
}
HEAVY = (
    "torch",
    "torchaudio",
    "sklearn",
    "soundfile",
    "great_expectations",
    "minio",
    "pandas",
    "musicvae.model.train",
    "musicvae.model.trained",
    "musicvae.model.features",
)

PROBE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[2])
import airflow.sdk  # the dag-processor has Airflow loaded before it reads a DAG file
import runpy
before = set(sys.modules)
t0 = time.perf_counter()
runpy.run_path(sys.argv[1])
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "imported": sorted(set(sys.modules) - before)}))
"""


def _airflow_env(tmp_path) -> dict:
    # The DAGs' defaults, whatever queue or pool the developer's shell may set.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MUSICVAE_TRAINING_")}
    return {
        **inherited,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_DIR),
    }


def _parse(home, dag_folder, show: str, **env) -> object:
    """`show`, an expression of `bag` that JSON can hold, once Airflow has parsed `dag_folder`
    (in a process of its own, with AIRFLOW_HOME `home` and `env` on top of the DAGs' defaults)."""
    script = (
        "import json\nfrom airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(dag_folder)!r})\n"
        f"print(json.dumps({show}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=_airflow_env(home) | env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    show = (
        "{'errors': {k: str(v) for k, v in bag.import_errors.items()},"
        " 'dags': {d.dag_id: {'tags': sorted(d.tags), 'params': sorted(d.params.keys()),"
        " 'tasks': {t.task_id: t.retries for t in d.tasks},"
        " 'pools': {t.task_id: [t.pool, t.queue] for t in d.tasks}} for d in bag.dags.values()}}"
    )
    return _parse(tmp_path_factory.mktemp("airflow"), DAG_DIR, show)


def test_every_dag_imports_without_errors(dagbag):
    assert dagbag["errors"] == {}
    assert set(dagbag["dags"]) == EXPECTED


def test_every_dag_is_tagged_and_every_task_retries(dagbag):
    for dag_id, dag in dagbag["dags"].items():
        assert "musicvae" in dag["tags"], dag_id
        assert dag["tasks"], dag_id
        for task_id, retries in dag["tasks"].items():
            assert retries >= 2, f"{dag_id}.{task_id} retries {retries}"


def test_the_retrain_form_offers_every_training_parameter(dagbag):
    from musicvae.retrain.form import RETRAIN_FORM

    assert dagbag["dags"]["musicvae_retrain"]["params"] == sorted(RETRAIN_FORM)
    assert set(RETRAIN_FORM) >= {
        "epochs",
        "beta",
        "latent_dim",
        "learning_rate",
        "batch_size",
        "seed",
        "n_clusters",
    }


def test_only_training_takes_the_one_slot_training_pool(dagbag):
    pools = {
        (dag_id, task_id): pool_queue
        for dag_id, dag in dagbag["dags"].items()
        for task_id, pool_queue in dag["pools"].items()
    }
    # Locally (no MUSICVAE_TRAINING_QUEUE) training stays on Airflow's default queue.
    assert pools.pop(("musicvae_retrain", "train")) == ["training", "default"]
    assert {pool for pool, _ in pools.values()} == {"default_pool"}


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_fast_without_heavy_imports(path, tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), str(DAG_DIR)],
        capture_output=True,
        text=True,
        env=_airflow_env(tmp_path),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    # The functional limit is the dag-processor's dagbag_import_timeout (30 s): a file slower
    # than that is not loaded at all. A third of it leaves room for a loaded CI machine; parse
    # speed itself is kept down by the heavy-import check below.
    assert probe["seconds"] < 10.0, f"{path.name} took {probe['seconds']:.2f} s to parse"
    heavy = [m for m in probe["imported"] if m.split(".")[0] in HEAVY or m in HEAVY]
    assert heavy == [], f"{path.name} imports {heavy} at parse time"


@pytest.mark.parametrize(
    "value, expression",
    [("", "0 * * * *"), ("manual", None), ("*/15 * * * *", "*/15 * * * *")],
)
def test_the_ingest_schedule_comes_from_the_environment(value, expression, tmp_path):
    show = "getattr(bag.dags['merge_ingest'].timetable, 'expression', None)"
    assert _parse(tmp_path, INGEST, show, MUSICVAE_INGEST_SCHEDULE=value) == expression


def test_a_bad_ingest_schedule_is_an_import_error_naming_the_variable(tmp_path):
    show = "list(bag.import_errors.values())"
    errors = _parse(tmp_path, INGEST, show, MUSICVAE_INGEST_SCHEDULE="every hour")
    assert "MUSICVAE_INGEST_SCHEDULE='every hour'" in errors[0]
