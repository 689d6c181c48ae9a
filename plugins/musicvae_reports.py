"""Puts musicvae's reports in the Airflow UI, behind the UI's own login: data quality per
validation run (musicvae's report and the Great Expectations Data Docs site), the evaluation
(research table, plots) of each model version, and the current clusters with their churn.

The reports live in object storage; this FastAPI app, mounted in the api-server at /musicvae,
serves them to logged-in users, and a navigation entry opens the latest one inside the UI.
"""

from airflow.api_fastapi.core_api.security import get_user
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

app = FastAPI(title="musicvae reports", dependencies=[Depends(get_user)])


def _settings():
    from musicvae.core.config import Settings

    return Settings.from_env()


async def _render(render, *args) -> HTMLResponse:
    from musicvae.ui.reports import ReportNotFoundError

    try:
        return HTMLResponse(await run_in_threadpool(render, _settings(), *args))
    except ReportNotFoundError as e:
        raise HTTPException(status_code=404, detail=str(e)) from e


@app.get("/data-quality/", response_class=HTMLResponse)
async def data_quality_index():
    from musicvae.ui.reports import index_html

    return await _render(index_html)


@app.get("/data-quality/drift.png")
async def drift_trend():
    from musicvae.ui.reports import drift_png

    return await _png(drift_png)


# A report links to its Data Docs as "docs/index.html"; each route says where, relative to
# itself, the run's folder is (runs/<id>/), so the link works from every route.
@app.get("/data-quality/latest", response_class=HTMLResponse)
async def latest_report():
    from musicvae.ui.reports import report_html

    return await _render(report_html, None, "runs/{run}/")


@app.get("/data-quality/runs/{run_id}", response_class=HTMLResponse)
async def run_report(run_id: str):
    from musicvae.ui.reports import report_html

    return await _render(report_html, run_id, "{run}/")


@app.get("/data-quality/runs/{run_id}/", response_class=HTMLResponse)
async def run_report_folder(run_id: str):
    from musicvae.ui.reports import report_html

    return await _render(report_html, run_id, "./")


@app.get("/data-quality/runs/{run_id}/docs/{path:path}")
async def data_docs(run_id: str, path: str):
    from musicvae.ui.reports import ReportNotFoundError, docs_file

    try:
        content, media = await run_in_threadpool(docs_file, _settings(), run_id, path)
    except ReportNotFoundError as e:
        raise HTTPException(status_code=404, detail=str(e)) from e
    return Response(content, media_type=media)


@app.get("/models/{version}/", response_class=HTMLResponse)
async def model_report(version: int):
    from musicvae.ui.reports import model_html

    return await _render(model_html, version)


@app.get("/models/{version}/files/{name}")
async def model_report_file(version: int, name: str):
    from musicvae.ui.reports import ReportNotFoundError, model_file

    try:
        content = await run_in_threadpool(model_file, _settings(), version, name)
    except ReportNotFoundError as e:
        raise HTTPException(status_code=404, detail=str(e)) from e
    media = {"png": "image/png", "json": "application/json"}.get(name.rsplit(".", 1)[-1])
    return Response(content, media_type=media or "text/plain; charset=utf-8")


@app.get("/clusters/", response_class=HTMLResponse)
async def clusters():
    from musicvae.ui.cluster_pages import clusters_html

    return await _render(clusters_html)


@app.get("/clusters/runs/{run_id}/flows.png")
async def cluster_flows(run_id: str):
    from musicvae.ui.cluster_pages import flows_png

    return await _png(flows_png, run_id)


@app.get("/clusters/{cluster_id}", response_class=HTMLResponse)
async def cluster_card(cluster_id: int):
    from musicvae.ui.cluster_pages import card_html

    return await _render(card_html, cluster_id)


@app.get("/clusters/{cluster_id}/map.png")
async def cluster_map(cluster_id: int):
    from musicvae.ui.cluster_pages import map_png

    return await _png(map_png, cluster_id)


async def _png(render, *args) -> Response:
    from musicvae.ui.reports import ReportNotFoundError

    try:
        content = await run_in_threadpool(render, _settings(), *args)
    except ReportNotFoundError as e:
        raise HTTPException(status_code=404, detail=str(e)) from e
    return Response(content, media_type="image/png")


class MusicvaeReportsPlugin(AirflowPlugin):
    name = "musicvae_reports"
    fastapi_apps = [{"app": app, "url_prefix": "/musicvae", "name": "musicvae reports"}]
    external_views = [
        {
            "name": "Data quality",
            "href": "musicvae/data-quality/latest",
            "url_route": "data-quality",
            "destination": "nav",
            "category": "browse",
        },
        {
            "name": "Clusters",
            "href": "musicvae/clusters/",
            "url_route": "clusters",
            "destination": "nav",
            "category": "browse",
        },
    ]
