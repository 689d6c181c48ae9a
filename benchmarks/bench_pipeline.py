"""A full-size run through every DAG on the local stack: a MERGE_Audio_Complete-sized catalogue.

    python -m benchmarks.bench_pipeline [--tracks 3554] [--out benchmarks/results/pipeline.json]

The catalogue is built once under benchmarks/.cache/merge-<N>/MERGE_Audio_Complete (the shape of
MERGE's largest subset: audio only, Q1..Q4 at the top, rows keyed by Song). A fresh local stack
(benchmarks/.cache/stack-pipeline) is pointed at that subset folder itself, as a user points it
at an unzipped download, and the pipeline runs through Airflow's scheduler as `make demo` runs it:

cold   merge_ingest -> merge_validate -> catalogue_assign, then musicvae_retrain (seed 0) ->
       catalogue_recluster. The front end's features are computed here.
warm   musicvae_retrain again (seed 1, so it trains a new version; promotion margin 1, so it is
       promoted) -> catalogue_recluster, with every feature already cached.

Each stage's time is its Airflow task's run time (start to end). "After the features are cached"
is ingest + validate + assign from the cold pass plus the warm retrain and recluster: what a
second full run on the same download costs. Target: under 20 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from datetime import datetime
from pathlib import Path

from benchmarks.bench_features import describe_machine, log_to_console, machine_info
from musicvae.local.airflow_client import AirflowClient, utcnow
from musicvae.local.demo import run_and_follow, run_pipeline
from musicvae.local.sample.layout import build_sample
from musicvae.local.servers.airflow import AIRFLOW_USER
from musicvae.local.stack import Stack

log = logging.getLogger("benchmarks.pipeline")
HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
DEFAULT_OUT = HERE / "results" / "pipeline.json"
MERGE_AUDIO_COMPLETE = 3554
TARGET_WARM_S = 20 * 60
TIMEOUT_S = 4 * 3600


def task_seconds(client: AirflowClient, dag_id: str, run_id: str) -> dict[str, float]:
    """Run time of each task of a DAG run that ran (skipped tasks have no start)."""
    out = {}
    for ti in client.task_instances(dag_id, run_id):
        if ti.get("start_date") and ti.get("end_date"):
            start, end = (datetime.fromisoformat(ti[k]) for k in ("start_date", "end_date"))
            out[f"{dag_id}.{ti['task_id']}"] = round((end - start).total_seconds(), 1)
    return out


def follow(client: AirflowClient, dag_id: str, conf: dict) -> dict[str, str]:
    """Trigger a DAG and wait for it and every run its asset events start."""
    runs: dict[str, str] = {}
    run_and_follow(client, dag_id, conf, runs, utcnow(), TIMEOUT_S)
    return runs


def stage_times(client: AirflowClient, runs: dict[str, str]) -> dict[str, float]:
    times: dict[str, float] = {}
    for dag_id, run_id in runs.items():
        times |= task_seconds(client, dag_id, run_id)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracks", type=int, default=MERGE_AUDIO_COMPLETE)
    p.add_argument("--epochs", type=int, default=None, help="default: the front end's")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    log_to_console()
    sample = build_sample(CACHE / f"merge-{args.tracks}", args.tracks, layout="audio_complete")
    log.info("catalogue: %d tracks in %s", sample.tracks, sample.root)

    stack_dir = CACHE / "stack-pipeline"
    Stack(stack_dir).down()
    shutil.rmtree(stack_dir, ignore_errors=True)  # cold: no features, no models
    stack = Stack(stack_dir)
    started = time.monotonic()
    stack.up(landing=str(sample.root))
    stack_up_s = time.monotonic() - started
    try:
        client = AirflowClient(stack.api_url, AIRFLOW_USER, stack.airflow_password)
        conf = {"epochs": args.epochs, "seed": 0}
        cold_started = time.monotonic()
        cold_runs = run_pipeline(client, conf, timeout=TIMEOUT_S).runs
        cold_wall = time.monotonic() - cold_started
        cold = stage_times(client, cold_runs)
        warm_started = time.monotonic()
        warm_runs = follow(client, "musicvae_retrain", {**conf, "seed": 1, "promotion_margin": 1.0})
        warm_wall = time.monotonic() - warm_started
        warm = stage_times(client, warm_runs)
    finally:
        stack.down()

    ingest_side = [k for k in cold if k.split(".")[0] in ("merge_ingest", "merge_validate")]
    ingest_side += [k for k in cold if k.startswith("catalogue_assign")]
    warm_total = sum(cold[k] for k in ingest_side) + sum(warm.values())
    report = {
        "tracks": args.tracks,
        "layout": "MERGE_Audio_Complete, the landing zone pointed at the subset folder itself",
        "stack_up_s": round(stack_up_s, 1),
        "cold": {"tasks_s": cold, "wall_s": round(cold_wall, 1), "runs": cold_runs},
        "warm": {"tasks_s": warm, "wall_s": round(warm_wall, 1), "runs": warm_runs},
        "after_features_cached_s": round(warm_total, 1),
        "target_s": TARGET_WARM_S,
        "met": warm_total < TARGET_WARM_S,
        "machine": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    return 0


def print_table(report: dict) -> None:
    n = report["tracks"]
    print(f"\nfull pipeline, {n} tracks ({report['layout']})")
    print(f"  {'task':<38} {'cold':>9} {'warm':>9} {'tracks/s':>9}")
    cold, warm = report["cold"]["tasks_s"], report["warm"]["tasks_s"]
    for task in [*cold, *(t for t in warm if t not in cold)]:
        c, w = cold.get(task), warm.get(task)
        rate = n / c if c else None
        print(f"  {task:<38} {_s(c):>9} {_s(w):>9} {f'{rate:.1f}' if rate else '':>9}")
    walls = (_s(report[p]["wall_s"]) for p in ("cold", "warm"))
    print(f"  {'DAG runs, wall clock':<38} {next(walls):>9} {next(walls):>9}")
    total = report["after_features_cached_s"]
    print(
        f"\nafter the features are cached: {total / 60:.1f} min (ingest + validate + assign + "
        f"retrain + recluster; target < {report['target_s'] // 60} min: "
        f"{'met' if report['met'] else 'NOT met'})"
    )
    m = report["machine"]
    print(f"machine: {describe_machine(m)}, {m['platform']}")


def _s(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds:.0f} s"


if __name__ == "__main__":
    raise SystemExit(main())
