"""The retrain in one process, without Airflow: the DAG's steps, called in its order.

`musicvae retrain` runs it; with `musicvae ingest`, `validate` and `recluster` it makes a whole
pipeline for debugging and notebooks. Parameters are the DAG form's, checked the same way.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from musicvae.core.config import Settings
from musicvae.retrain.form import resolve

log = logging.getLogger("musicvae.retrain.pipeline")


@dataclass
class RetrainResult:
    snapshot: dict
    features: dict | None = None
    version: int | None = None
    decision: dict | None = None
    note: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


def run_retrain(settings: Settings, values: dict, run_id: str = "cli-retrain") -> RetrainResult:
    """snapshot -> features -> train -> register -> evaluate -> promote, as musicvae_retrain."""
    from musicvae.registry import snapshots
    from musicvae.retrain import steps
    from musicvae.retrain.model_report import report
    from musicvae.retrain.promotion import decide

    form = resolve(values)
    params = steps.RetrainParams.from_dict(form)
    result = RetrainResult(snapshot={})
    clock = result.seconds
    with _step(clock, "snapshot"):
        result.snapshot = snapshots.take_snapshot(settings)
    snapshot_id = result.snapshot["snapshot_id"]
    with _step(clock, "features"):
        result.features = steps.prepare_features(settings, snapshot_id, params.audio_frontend)
    if form["dry_run"]:
        result.note = f"dry run: parameters {params} are valid; nothing trained"
        return result
    with _step(clock, "train"):
        candidate = steps.train(settings, snapshot_id, params)
    if candidate is None:
        result.note = "this snapshot and these parameters are already registered"
        return result
    with _step(clock, "register"):
        result.version = steps.register(settings, candidate, run_id)
    with _step(clock, "evaluate"):
        report(settings, result.version)
    with _step(clock, "promote"):
        result.decision = decide(settings, result.version, form["promotion_margin"])
    result.note = result.decision["reason"]
    return result


@contextmanager
def _step(seconds: dict[str, float], name: str):
    """Says when a step starts and ends, and records its time."""
    log.info("retrain: %s ...", name)
    started = time.monotonic()
    yield
    seconds[name] = round(time.monotonic() - started, 1)
    log.info("retrain: %s done in %.1f s", name, seconds[name])
