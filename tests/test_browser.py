"""The Airflow UI in a real browser: log in, retrain from the trigger form, read data quality,
open a cluster card and listen to it.

Playwright drives Debian's Chromium (`/usr/bin/chromium`, installed by `make test`; no browser
is downloaded) against an api-server this test starts. Screenshots of every step are written
to test-artifacts/browser/ (git-ignored), so a failure can be seen, not only read.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import unquote

import pytest
import sqlalchemy as sa

from musicvae.core import db
from musicvae.local.airflow_client import AirflowClient, utcnow
from musicvae.local.sample.layout import build_sample
from musicvae.local.servers.airflow import AIRFLOW_USER
from musicvae.local.stack import Stack
from musicvae.retrain.queues import TRAINING_POOL

from .conftest import REPO

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # The test presses play by script, not by a click: let audio start without a gesture.
    "--autoplay-policy=no-user-gesture-required",
]
ARTIFACTS = REPO / "test-artifacts" / "browser"
# Every training parameter differs from the form's default, and the training stays tiny.
FORM_VALUES = {
    "epochs": 2,
    "beta": 0.5,
    "latent_dim": 8,
    "learning_rate": 0.002,
    "batch_size": 8,
    "seed": 7,
    "n_clusters": 3,
    "vocab_size": 64,
}
TRACKS = 12
# A loaded CI machine can take many seconds to render a page of the React UI.
UI_TIMEOUT_MS = 60_000
REVIEW_READING_S = 15  # see the approval test


@pytest.fixture(scope="module")
def ui(stack_dir):
    """A stack with its catalogue ingested and validated; a REST client; the validation run id."""
    stack = Stack(stack_dir("browser-stack"))
    stack.up()
    try:
        build_sample(stack.landing, tracks=TRACKS, seed=3, progress=False)
        client = AirflowClient(stack.api_url, AIRFLOW_USER, stack.airflow_password)
        client.wait_for_dags(["merge_ingest", "merge_validate", "musicvae_retrain"])
        since = utcnow()
        _unpause_retrain_and_let_its_slot_skip(client, since)
        client.unpause("merge_ingest")
        client.unpause("merge_validate")
        client.trigger("merge_ingest")
        # Unpausing also starts the hourly slot; whichever of the two runs ingests the sample
        # (the other finds nothing new and skips) triggers the one validation run.
        for run_id in client.runs_since("merge_ingest", since):
            client.wait("merge_ingest", run_id, timeout=300)
        [(_, validate_run)] = client.triggered_runs("merge_ingest", since)
        client.wait("merge_validate", validate_run, timeout=300)
        yield stack, client, validate_run
    finally:
        stack.down()


def _unpause_retrain_and_let_its_slot_skip(client: AirflowClient, since: str) -> None:
    """Unpausing starts the weekly slot at once; on the empty catalogue it skips.

    Waiting for it here keeps it from training with the defaults once the data has landed.
    """
    client.unpause("musicvae_retrain")
    deadline = time.monotonic() + 60
    while not (runs := client.runs_since("musicvae_retrain", since)):
        if time.monotonic() > deadline:
            return
        time.sleep(2)
    for run_id in runs:
        client.wait("musicvae_retrain", run_id, timeout=300)


@pytest.fixture(scope="module")
def page(ui):
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail("Playwright is missing: pip install -e '.[dev]' (make install)")
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (make test does it as root)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def _shot(page, name: str) -> None:
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def _query(stack, sql: str, **params):
    with db.engine(stack.database_url()).connect() as conn:
        return conn.execute(sa.text(sql), params).all()


@pytest.fixture(scope="module")
def triggered_run(ui, page):
    """Log in through the login page, open musicvae_retrain and trigger it from the form."""
    from playwright.sync_api import expect

    stack, client, _ = ui
    page.goto(stack.api_url)
    page.wait_for_url("**/auth/login**")
    _shot(page, "01-login")
    page.locator("input[name=username]").fill(AIRFLOW_USER)
    page.locator("input[name=password]").fill(stack.airflow_password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)

    page.get_by_test_id("nav-dags-link").click()
    page.get_by_role("link", name="musicvae_retrain", exact=True).first.click()
    # The DAG page has rendered once its task list shows (the address changes before that).
    expect(page.get_by_test_id("snapshot")).to_be_visible(timeout=UI_TIMEOUT_MS)
    _shot(page, "02-dag")

    page.get_by_test_id("trigger-dag-button").click()
    form = page.get_by_role("dialog")
    for name, value in FORM_VALUES.items():
        field = form.get_by_role("spinbutton", name=name, exact=True)
        field.fill(str(value))
        field.blur()
    _shot(page, "03-trigger-form")
    form.get_by_test_id("trigger-dag-submit").click()
    # The UI opens the new run's page; its id is the last part of the address.
    page.wait_for_url("**/dags/musicvae_retrain/runs/**")
    run_id = unquote(page.url.rsplit("/runs/", 1)[1])
    client.wait("musicvae_retrain", run_id, timeout=900)
    page.reload()
    return run_id


def test_the_run_triggered_from_the_form_succeeds_in_the_ui(page, triggered_run):
    from playwright.sync_api import expect

    assert triggered_run.startswith("manual__")
    expect(page.get_by_text(triggered_run).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text("Success").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    _shot(page, "04-run-succeeded")


def test_the_registered_model_version_carries_the_form_values(ui, triggered_run):
    stack, client, _ = ui
    assert client.run("musicvae_retrain", triggered_run)["conf"].items() >= FORM_VALUES.items()
    [(params,)] = _query(
        stack, "SELECT params FROM model_versions WHERE dag_run_id = :r", r=triggered_run
    )
    # Every value typed into the form, and the front end the form left at its default.
    assert params == {**FORM_VALUES, "audio_frontend": "musicnn"}


def test_training_ran_in_the_one_slot_training_pool(ui, triggered_run):
    _, client, _ = ui
    train = client.task_instance("musicvae_retrain", triggered_run, "train")
    assert train["pool"] == TRAINING_POOL == "training" and train["state"] == "success"
    assert client.pool(TRAINING_POOL)["slots"] == 1


def test_the_data_quality_link_shows_the_latest_report(ui, page, triggered_run):
    from playwright.sync_api import expect

    _, _, validate_run = ui
    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="Data quality").click()
    page.wait_for_url("**/data-quality**")
    report = page.frame_locator("iframe").first
    expect(report.get_by_text(validate_run).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(report.get_by_text("bimodal_balanced/A001").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    _shot(page, "05-data-quality")


def test_a_cluster_card_plays_the_audio_of_a_track_near_its_centre(ui, page, triggered_run):
    from playwright.sync_api import expect

    from musicvae.catalogue.recluster import run_recluster

    stack, _, _ = ui
    run_recluster(stack.settings(), "browser-recluster")
    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="Clusters").click()
    page.wait_for_url("**/clusters**")
    clusters = page.frame_locator("iframe").first
    expect(clusters.get_by_text("browser-recluster").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    _shot(page, "06-clusters")
    clusters.get_by_role("link", name="0", exact=True).click()
    expect(clusters.get_by_text("Nearest its centre")).to_be_visible(timeout=UI_TIMEOUT_MS)
    audio = clusters.locator("audio").first
    # Played from the presigned link: the position moves once the MP3 is fetched and decoded.
    position = audio.evaluate(
        "a => a.play().then(() => new Promise(done => setTimeout(() => done(a.currentTime), 2000)))"
    )
    assert position > 0
    map_image = clusters.locator("img")
    expect(map_image).to_have_js_property("complete", True, timeout=UI_TIMEOUT_MS)
    assert map_image.evaluate("img => img.naturalWidth") > 0
    _shot(page, "06-cluster-card")


def test_a_reviewer_approves_a_new_version_from_the_required_actions_tab(ui, page, triggered_run):
    from urllib.parse import quote

    from playwright.sync_api import expect

    stack, client, _ = ui
    conf = {**FORM_VALUES, "seed": 9, "require_approval": True, "promotion_margin": 1.0}
    run_id = client.trigger("musicvae_retrain", conf)
    client.wait_for_task("musicvae_retrain", run_id, "review", "awaiting_input")
    # A reviewer reads before answering. An answer within seconds of the request, while the
    # worker that paused the task is still exiting (5.3 s once in CI), races Airflow's
    # scheduler: it takes the worker's exit for a crash, retries the task, and asks again.
    time.sleep(REVIEW_READING_S)
    page.goto(
        f"{stack.api_url}/dags/musicvae_retrain/runs/{quote(run_id, safe='')}"
        "/tasks/review/required_actions"
    )
    expect(page.get_by_text("to champion?").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    _shot(page, "10-required-action")
    approve = page.get_by_role("button", name="Approve")
    expect(approve).to_be_enabled(timeout=UI_TIMEOUT_MS)
    approve.click()
    # The UI confirms that Airflow recorded the answer; the run then goes on by itself.
    expect(page.get_by_text("review response successful")).to_be_visible(timeout=UI_TIMEOUT_MS)
    client.wait("musicvae_retrain", run_id, timeout=600)
    [(promotion,)] = _query(
        stack, "SELECT promotion FROM model_versions WHERE dag_run_id = :r", r=run_id
    )
    assert promotion["promoted"] and promotion["approval"]["by"] == AIRFLOW_USER


def test_a_batch_that_drifted_shows_in_data_quality_and_in_the_retrain_form(
    ui, page, triggered_run
):
    """New tracks unlike the champion's training data arrive: validation flags them, assign
    finds them far from every cluster, the Data quality page draws it, and the trigger form
    of the next retrain says so."""
    from playwright.sync_api import expect

    from musicvae.catalogue.recluster import run_recluster

    from .driftbatch import SHIFTED, add_batch

    stack, client, _ = ui
    # Assign places new tracks among the champion's clusters: the one just approved has none
    # yet here (catalogue_recluster stays paused in this stack).
    run_recluster(stack.settings(), "browser-recluster-champion")
    add_batch(Path(stack.landing) / "MERGE_Bimodal_Balanced", TRACKS, 3, 10, 7001, shifted=True)
    client.unpause("catalogue_assign")
    since = utcnow()
    ingest = client.trigger("merge_ingest")
    client.wait("merge_ingest", ingest, timeout=300)
    [(_, validate)] = client.triggered_runs("merge_ingest", since, ingest)
    client.wait("merge_validate", validate, timeout=300)
    [(_, assign)] = client.triggered_runs("merge_validate", since, validate)
    client.wait("catalogue_assign", assign, timeout=600)
    [row] = _query(stack, "SELECT * FROM drift_runs WHERE run_id = :r", r=validate)
    assert set(row.drifted_features) == SHIFTED and row.ood_share is not None and row.drifted

    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="Data quality").click()
    report = page.frame_locator("iframe").first
    expect(report.get_by_text("Data drift:")).to_be_visible(timeout=UI_TIMEOUT_MS)
    _shot(page, "07-data-quality-drift")
    page.goto(f"{stack.api_url}/musicvae/data-quality/")
    expect(page.get_by_text(f"{row.ood_share:.0%}").first).to_be_visible()
    trend = page.locator("img[alt='drift trend']")
    expect(trend).to_have_js_property("complete", True, timeout=UI_TIMEOUT_MS)
    assert trend.evaluate("img => img.naturalWidth") > 0
    _shot(page, "08-drift-trend")

    # The DAG processor parses the DAG file again within its interval; the form then has it.
    deadline = time.monotonic() + 180
    while "data_drift" not in client.dag_params("musicvae_retrain"):
        assert time.monotonic() < deadline, "the retrain form never showed the drift notice"
        time.sleep(5)
    page.goto(f"{stack.api_url}/dags/musicvae_retrain")
    page.get_by_test_id("trigger-dag-button").click()
    form = page.get_by_role("dialog")
    expect(form.get_by_text("Data drift since the champion was trained")).to_be_visible()
    expect(form.get_by_text(validate).first).to_be_visible()
    page.screenshot(path=ARTIFACTS / "09-retrain-form-drift.png")  # the dialog as a user sees it
