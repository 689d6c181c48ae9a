"""A small client for Airflow 3's REST API (v2): trigger DAGs and follow them through Assets."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import requests

from musicvae.core.errors import MusicVAEError

log = logging.getLogger("musicvae.airflow")

FINISHED = {"success", "failed"}
TASK_FINISHED = {"success", "failed", "skipped", "upstream_failed", "removed"}


class AirflowError(MusicVAEError):
    """Airflow refused a request or a DAG run failed; the message names the run and task."""


class AirflowClient:
    def __init__(self, url: str, username: str, password: str, timeout: float = 30):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        r = requests.post(
            f"{self.url}/auth/token",
            json={"username": username, "password": password},
            timeout=timeout,
        )
        if r.status_code >= 400:
            raise AirflowError(f"login to {self.url} as {username!r} failed: HTTP {r.status_code}")
        self.session.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def _call(self, method: str, path: str, **kwargs):
        r = self.session.request(method, f"{self.url}/api/v2{path}", timeout=self.timeout, **kwargs)
        if r.status_code >= 400:
            raise AirflowError(f"{method} {path}: HTTP {r.status_code}: {r.text[:500]}")
        return r.json() if r.content else None

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 180) -> None:
        """Wait until the dag-processor has parsed every DAG (and none failed to import)."""
        deadline = time.monotonic() + timeout
        while True:
            errors = self._call("GET", "/importErrors")["import_errors"]
            if errors:
                raise AirflowError(
                    "DAG import errors: "
                    + "; ".join(f"{e['filename']}: {e['stack_trace'][-300:]}" for e in errors)
                )
            known = {d["dag_id"] for d in self._call("GET", "/dags", params={"limit": 100})["dags"]}
            if set(dag_ids) <= known:
                return
            if time.monotonic() > deadline:
                raise AirflowError(
                    f"DAGs not parsed after {timeout:.0f} s: {sorted(set(dag_ids) - known)}"
                )
            time.sleep(2)

    def ensure_pool(self, name: str, slots: int, description: str) -> None:
        """Create the pool, or set its slots and description if it exists (safe to repeat)."""
        body = {"name": name, "slots": slots, "description": description, "include_deferred": False}
        try:
            self._call("PATCH", f"/pools/{name}", json=body)
        except AirflowError as e:
            if "HTTP 404" not in str(e):
                raise
            self._call("POST", "/pools", json=body)

    def pool(self, name: str) -> dict:
        return self._call("GET", f"/pools/{name}")

    def dag_params(self, dag_id: str) -> dict:
        """The DAG's Params as the trigger form gets them (its latest parse)."""
        return self._call("GET", f"/dags/{dag_id}/details")["params"] or {}

    def unpause(self, dag_id: str) -> None:
        self._call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        body = {"logical_date": None, "conf": conf or {}, "note": "triggered by musicvae"}
        return self._call("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return self._call("GET", path)["task_instances"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        return {t["task_id"]: t["state"] for t in self.task_instances(dag_id, run_id)}

    def task_instance(self, dag_id: str, run_id: str, task_id: str) -> dict:
        return self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")

    def wait_for_task(
        self, dag_id: str, run_id: str, task_id: str, state: str, timeout: float = 900
    ) -> dict:
        """Wait until a task reaches `state` (e.g. awaiting_input: a person's answer is due)."""
        deadline = time.monotonic() + timeout
        while (ti := self.task_instance(dag_id, run_id, task_id))["state"] != state:
            if ti["state"] in TASK_FINISHED or time.monotonic() > deadline:
                raise AirflowError(
                    f"{dag_id}.{task_id} in run {run_id} is {ti['state']}, not {state}"
                )
            time.sleep(3)
        return ti

    def hitl_detail(self, dag_id: str, run_id: str, task_id: str) -> dict:
        """A Human-in-the-loop task's request (subject, body, options) and its answer."""
        return self._call("GET", _hitl_path(dag_id, run_id, task_id))

    def respond(
        self, dag_id: str, run_id: str, task_id: str, option: str, params_input: dict | None = None
    ) -> dict:
        """Answer a Human-in-the-loop task, as its Required Actions form does."""
        body = {"chosen_options": [option], "params_input": params_input or {}}
        return self._call("PATCH", _hitl_path(dag_id, run_id, task_id), json=body)

    def wait(self, dag_id: str, run_id: str, timeout: float = 1800, every: float = 3) -> dict:
        """Wait for a run to finish, logging task progress; raise if it failed."""
        started, last = time.monotonic(), None
        while True:
            run = self.run(dag_id, run_id)
            states = self.task_states(dag_id, run_id)
            line = ", ".join(f"{t}={s or 'queued'}" for t, s in states.items())
            if line != last:
                log.info(
                    "%s [%s] %s (%.0f s)", dag_id, run["state"], line, time.monotonic() - started
                )
                last = line
            if run["state"] in FINISHED:
                break
            if time.monotonic() - started > timeout:
                raise AirflowError(
                    f"{dag_id} run {run_id} not finished after {timeout:.0f} s ({line})"
                )
            time.sleep(every)
        if run["state"] != "success":
            failed = [t for t, s in states.items() if s in ("failed", "upstream_failed")]
            raise AirflowError(
                f"{dag_id} run {run_id} failed (tasks: {failed}): {self.failure(dag_id, run_id)}"
            )
        return run

    def failure(self, dag_id: str, run_id: str) -> str:
        """Why a run's first failed task failed, from the error its log records."""
        for ti in self.task_instances(dag_id, run_id):
            if ti["state"] != "failed":
                continue
            where = f"{ti['task_id']}" + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")
            path = (
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}"
                f"/logs/{max(ti['try_number'], 1)}"
            )
            params = {"full_content": "true", "map_index": ti["map_index"]}
            try:
                entries = self._call("GET", path, params=params).get("content") or []
            except AirflowError as e:
                return f"{where} failed; its log could not be read ({e})"
            errors = [
                f"{d.get('exc_type')}: {d.get('exc_value')}"
                for entry in entries
                if isinstance(entry, dict)
                for d in (entry.get("error_detail") or [])[-1:]
            ]
            return f"{where}: {errors[-1] if errors else 'no error in its log; see the Airflow UI'}"
        return "no task failed; see the run in the Airflow UI"

    def _has_consumers(self, asset_id: int) -> bool:
        return bool(self._call("GET", f"/assets/{asset_id}")["scheduled_dags"])

    def runs_since(self, dag_id: str, since: str) -> list[str]:
        """Run ids of a DAG's runs created since an ISO time (scheduled slots included)."""
        runs = self._call(
            "GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-id", "limit": 50}
        )["dag_runs"]
        start = datetime.fromisoformat(since)
        return [
            r["dag_run_id"]
            for r in runs
            if r.get("queued_at") and datetime.fromisoformat(r["queued_at"]) >= start
        ]

    def triggered_runs(
        self, dag_id: str, since: str, run_id: str | None = None, settle: float = 30
    ) -> list[tuple[str, str]]:
        """(dag_id, run_id) of the runs that asset events of this DAG (since a time) created.

        The scheduler creates those runs a moment after the event; wait up to `settle` seconds.
        """
        params = {"source_dag_id": dag_id, "timestamp_gte": since}
        if run_id:
            params["source_run_id"] = run_id
        deadline = time.monotonic() + settle
        give_up = time.monotonic() + max(settle, 300)
        while True:
            try:
                events = self._call("GET", "/assets/events", params=params)["asset_events"]
            except AirflowError as e:
                # Airflow answers 500 while a run an event created is queued without a start
                # date (apache/airflow#71360); it passes once the scheduler starts that run.
                if "HTTP 500" not in str(e) or time.monotonic() > give_up:
                    raise
                time.sleep(2)
                continue
            created = [(r["dag_id"], r["run_id"]) for e in events for r in e["created_dagruns"]]
            waiting = any(
                not e["created_dagruns"] and self._has_consumers(e["asset_id"]) for e in events
            )
            if not waiting or time.monotonic() > deadline:
                return sorted(set(created))
            time.sleep(2)


def _hitl_path(dag_id: str, run_id: str, task_id: str) -> str:
    return f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails"


def utcnow() -> str:
    return datetime.now(UTC).isoformat()
