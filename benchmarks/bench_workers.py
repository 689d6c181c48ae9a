"""The sharded stages on Airflow's Celery workers: one task against shards on 1 and 2 workers.

    python -m benchmarks.bench_workers [--tracks 100000] [--shard-size N] [--clip-seconds 4]
                                       [--frontend musicnn|mel] [--configs one-task 2-workers]
                                       [--keep] [--no-retrain]

A MERGE_Audio_Complete-shaped catalogue of `tracks` short clips is written once under
benchmarks/.cache/workers-<N>/. Its audio is reused decoded content under distinct ids: 32 clips
are rendered, and each track's MP3 is one of them with an ID3v1 tag naming the track. Every
file thus has its own content hash (ingest uploads it, the feature store computes it), while
building 100,000 tracks takes minutes, not hours of synthesis. The data-quality thresholds are
the packaged ones with `min_duration_s` lowered to accept the short clips.

Each configuration gets a fresh local stack with the CeleryExecutor and runs the pipeline through
Airflow's scheduler as `make demo` does: merge_ingest -> merge_validate -> catalogue_assign, then
musicvae_retrain (features with `--frontend`, a short training) -> catalogue_recluster.
merge_ingest's schedule is `manual` (MUSICVAE_INGEST_SCHEDULE), so no hourly run shares the
workers with the timed one:

one task            MUSICVAE_SHARD_SIZE above the catalogue: each stage is one task, as
                    before the stages were sharded;
1 worker x 2 slots  shards of `shard_size` on one worker (the stack gives a lone worker two
                    task slots);
2 workers x 1 slot  shards of `shard_size` on two workers, a slot each.

Both sharded configurations have two task slots; `--shard-size` defaults to the README's sizing
rule for them, about 3 shards per slot and at least 2000 tracks (16,667 at 100,000 tracks).

`--no-retrain` stops after merge_ingest and what its Assets trigger: ingest and validation
alone, in minutes where the front end would take most of an hour at 100,000 tracks.

A stage's time is the wall clock from its first task's start to its last task's end (plan, the
mapped shards and the reduce). Every process of each server is sampled for its resident memory
(once a second, with psutil); the report gives each server's and each worker's task processes'
peak. The last section extrapolates to 1M tracks on N workers from the one-task run's
per-track rates (see `extrapolate`).
Figures go to benchmarks/results/scale.json under "pipeline_<tracks>".
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import psutil

from benchmarks.bench_features import describe_machine, log_to_console, machine_info
from musicvae.local.airflow_client import AirflowClient
from musicvae.local.demo import run_pipeline
from musicvae.local.sample import metadata
from musicvae.local.sample.audio import SAMPLE_RATE, encode_mp3, render_audio
from musicvae.local.sample.layout import write_if_changed
from musicvae.local.servers.airflow import AIRFLOW_USER
from musicvae.local.stack import Stack
from musicvae.quality.thresholds import DEFAULT_FILE

log = logging.getLogger("benchmarks.workers")
HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results" / "scale.json"
TIMEOUT_S = 6 * 3600
BASE_CLIPS = 32
SHARDED_SLOTS = 2  # 1 worker x 2 slots or 2 workers x 1 slot: the stack's task slots on 2 cores
ONE_TASK = "one task"
# Each stage: its DAG and the tasks that make it (the plan, the mapped shards, the reduce).
STAGES = {
    "ingest": ("merge_ingest", ("shards", "upload", "ingest")),
    "validate": ("merge_validate", ("shards", "profile", "validate")),
    "features": ("musicvae_retrain", ("feature_shards", "features")),
    "recluster": ("catalogue_recluster", ("shards", "embed", "recluster")),
}


def id3v1(title: str) -> bytes:
    """An ID3v1 tag (128 bytes, after the audio): decoders skip it, the content hash does not."""
    text = title.encode("ascii")[:30].ljust(30, b"\0")
    return b"TAG" + text + bytes(94) + b"\xff"


def catalogue(root: Path, tracks: int, clip_seconds: float, seed: int = 0) -> Path:
    """The MERGE_Audio_Complete tree of `tracks` short clips (see the module docstring)."""
    subset = root / "MERGE_Audio_Complete"
    csv = subset / "merge_audio_complete_metadata.csv"
    if csv.exists():
        return subset
    rows = metadata.plan(tracks, seed)
    clips = [
        encode_mp3(
            render_audio(r.label, r.quadrant, seed, r.index)[: int(clip_seconds * SAMPLE_RATE)]
        )
        for r in rows[:BASE_CLIPS]
    ]
    started = time.monotonic()
    for i, row in enumerate(rows, 1):
        path = subset / row.quadrant / f"{row.audio_id}.mp3"
        write_if_changed(path, clips[row.index % len(clips)] + id3v1(row.audio_id))
        if i % 10000 == 0 or i == tracks:
            log.info(
                "catalogue: %d/%d tracks written (%.0f/s)",
                i,
                tracks,
                i / (time.monotonic() - started),
            )
    # The metadata last: its presence marks a finished catalogue.
    lines = metadata.metadata_csv((metadata.metadata(r, seed) for r in rows), audio_only=True)
    write_if_changed(csv, lines)
    return subset


def thresholds(path: Path, clip_seconds: float) -> Path:
    """The packaged data-quality thresholds, accepting clips of `clip_seconds`."""
    text = DEFAULT_FILE.read_text()
    old = next(line for line in text.splitlines() if line.startswith("min_duration_s"))
    path.write_text(text.replace(old, f"min_duration_s = {clip_seconds / 2}"))
    return path


class MemorySampler(threading.Thread):
    """Peak resident memory of every process of a stack, by the server it descends from (a
    Celery worker's task processes under that worker)."""

    def __init__(self, stack_root: Path, every: float = 1.0):
        super().__init__(daemon=True)
        self.every = every
        self.servers = {
            int(p.read_text().split()[0]): "postgres" if p.stem == "postmaster" else p.stem
            for p in stack_root.glob("**/*.pid")
        }
        self.peaks: dict[str, float] = defaultdict(float)
        self.totals: dict[str, float] = defaultdict(float)
        # (time, MB): the largest process the Celery workers started (the task runners).
        self.task_rss: list[tuple[datetime, float]] = []
        self.done = threading.Event()

    def _server(self, pid: int, parents: dict[int, int]) -> str | None:
        while pid and pid not in self.servers:
            pid = parents.get(pid, 0)
        return self.servers.get(pid)

    def run(self) -> None:
        while not self.done.wait(self.every):
            procs = [p.info for p in psutil.process_iter(["pid", "ppid", "memory_info"])]
            parents = {p["pid"]: p["ppid"] for p in procs}
            total: dict[str, float] = defaultdict(float)
            sample: dict[str, float] = defaultdict(float)
            for p in procs:
                server = self._server(p["pid"], parents)
                if server is None or p["memory_info"] is None:
                    continue
                rss = p["memory_info"].rss / 2**20
                role = server if p["pid"] in self.servers else f"{server} (children)"
                self.peaks[role] = max(self.peaks[role], rss)
                if p["pid"] not in self.servers:
                    sample[server] = max(sample[server], rss)
                total[server] += rss
            for server, mb in total.items():
                self.totals[server] = max(self.totals[server], mb)
            tasks = [v for k, v in sample.items() if k.startswith("airflow-celery-worker")]
            self.task_rss.append((datetime.now(UTC), max(tasks, default=0.0)))

    def task_peak(self, start: datetime, end: datetime) -> int:
        """The largest task process seen between two times (MB)."""
        return round(max((mb for t, mb in self.task_rss if start <= t <= end), default=0.0))

    def stop(self) -> dict:
        self.done.set()
        self.join()
        return {
            "peak_rss_mb_by_process": {k: round(v) for k, v in sorted(self.peaks.items())},
            "peak_rss_mb_by_server": {k: round(v) for k, v in sorted(self.totals.items())},
        }


def stage_times(client: AirflowClient, since: str, stages: tuple[str, ...]) -> dict[str, dict]:
    """Each stage's window and wall clock (its first task's start to its last task's end), the
    summed run time of its mapped shard tasks, and the hostnames those ran on.

    Of a DAG's runs since `since`, the one whose shard tasks took longest: the one that did the
    work. Unpausing a scheduled DAG can start its latest slot at once (seen when a configuration
    started just after the hour): that run then ingests the catalogue, and the triggered one,
    queued behind it, finds every file there already."""
    out = {}
    for stage in stages:
        dag_id, task_ids = STAGES[stage]
        candidates = [
            _run_times(client.task_instances(dag_id, run_id), task_ids)
            for run_id in client.runs_since(dag_id, since)
        ]
        out[stage] = max(candidates, key=lambda t: t["shard_tasks_s"])
    return out


def _run_times(instances: list[dict], task_ids: tuple[str, ...]) -> dict:
    ran = [
        (ti, datetime.fromisoformat(ti["start_date"]), datetime.fromisoformat(ti["end_date"]))
        for ti in instances
        if ti["task_id"] in task_ids and ti.get("start_date") and ti.get("end_date")
    ]
    mapped = [(ti, s, e) for ti, s, e in ran if ti["task_id"] == task_ids[1]]
    start, end = min(s for _, s, _ in ran), max(e for _, _, e in ran)
    return {
        "start": start,
        "end": end,
        "wall_s": round((end - start).total_seconds(), 1),
        "shard_tasks_s": round(sum((e - s).total_seconds() for _, s, e in mapped), 1),
        "shards": len(mapped),
        "hostnames": sorted({ti["hostname"] for ti, _, _ in mapped}),
    }


def run_config(landing: Path, shard_size: int, workers: int, conf: dict | None) -> dict:
    """One configuration on a fresh stack; its stage times and peak memory. With `conf` None
    no retrain runs: ingest and validation only."""
    stack_dir = CACHE / f"stack-workers-{workers}-{shard_size}"
    Stack(stack_dir).down()
    shutil.rmtree(stack_dir, ignore_errors=True)
    os.environ["MUSICVAE_SHARD_SIZE"] = str(shard_size)
    stack = Stack(stack_dir, executor="celery", workers=workers)
    stack.up(landing=str(landing))
    slots = int(stack.airflow.env(stack.settings())["AIRFLOW__CELERY__WORKER_CONCURRENCY"])
    sampler = MemorySampler(stack_dir)
    sampler.start()
    try:
        client = AirflowClient(stack.api_url, AIRFLOW_USER, stack.airflow_password)
        since = datetime.now(UTC).isoformat()
        started = time.monotonic()
        runs = run_pipeline(client, conf, timeout=TIMEOUT_S).runs
        wall = time.monotonic() - started
        stages = stage_times(client, since, tuple(STAGES) if conf else ("ingest", "validate"))
    finally:
        memory = sampler.stop()
        stack.down()
    for t in stages.values():
        t["task_peak_rss_mb"] = sampler.task_peak(t.pop("start"), t.pop("end"))
    log.info(
        "%d workers, shards of %d: %s",
        workers,
        shard_size,
        {k: v["wall_s"] for k, v in stages.items()},
    )
    return {
        "shard_size": shard_size,
        "workers": workers,
        "slots_per_worker": slots,
        "stages": stages,
        "pipeline_wall_s": round(wall, 1),
        **memory,
        "runs": runs,
    }


def sized_shards(tracks: int) -> int:
    """The README's rule, `tracks / (3 x workers x slots)`, for the two task slots of either
    sharded configuration, and never below 2000 tracks, where start-up outweighs the work."""
    return max(2000, math.ceil(tracks / (3 * SHARDED_SLOTS)))


def label(config: dict, tracks: int) -> str:
    if config["shard_size"] > tracks:
        return ONE_TASK
    workers, slots = config["workers"], config["slots_per_worker"]
    return f"{workers} worker{'s' * (workers > 1)} x {slots} slot{'s' * (slots > 1)}"


def speedups(configs: dict) -> dict:
    """Each sharded configuration's stage times against the one task's (>1: faster)."""
    one = configs[ONE_TASK]["stages"]
    return {
        "speedup_vs_one_task": {
            name: {s: round(one[s]["wall_s"] / t["wall_s"], 2) for s, t in c["stages"].items()}
            for name, c in configs.items()
            if name != ONE_TASK
        }
    }


def extrapolate(one_task: dict, tracks: int, target: int, workers: tuple[int, ...]) -> dict:
    """Each stage's time at `target` tracks on N workers, from the one-task run.

    There a stage's shard task had the machine to itself; the rest of its wall clock is the plan
    and reduce tasks and the scheduling between them, which run once whatever the workers.
    Assumed: both parts grow linearly with the tracks (the measured per-track rates hold), each
    worker is a machine like this one, so N workers run N shards at a time at the one-task
    rate, and PostgreSQL and object storage keep up with them. The second part also scales the
    tasks' fixed start-up and scheduling seconds, so for many workers this is an upper bound.
    """
    out = {}
    for n in workers:
        stages = {}
        for stage, t in one_task.items():
            rest_s = t["wall_s"] - t["shard_tasks_s"]
            stages[stage] = round((rest_s + t["shard_tasks_s"] / n) * target / tracks)
        out[f"{n} workers"] = {"stages_s": stages, "total_s": sum(stages.values())}
    return out


# The configurations by name, in the order `--configs` names them: (sharded, workers).
CONFIGS = {"one-task": (False, 1), "1-worker": (True, 1), "2-workers": (True, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracks", type=int, default=100_000)
    p.add_argument("--shard-size", type=int, help="default: `sized_shards(tracks)`")
    p.add_argument("--clip-seconds", type=float, default=4.0)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--frontend", choices=("musicnn", "mel"), default="musicnn")
    p.add_argument(
        "--configs",
        nargs="+",
        choices=list(CONFIGS),
        default=list(CONFIGS),
        help="which configurations to run, in this order (default: all three)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="report with the configurations an earlier run measured on this catalogue "
        "(its configs.json) that this one does not rerun: one configuration per invocation",
    )
    p.add_argument(
        "--no-retrain",
        action="store_true",
        help="ingest and validation only (features and recluster need a retrain); reported "
        "under pipeline_<tracks>_ingest_validate",
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    log_to_console()
    work = CACHE / f"workers-{args.tracks}"
    landing = catalogue(work, args.tracks, args.clip_seconds)
    os.environ["MUSICVAE_DATA_QUALITY_CONFIG"] = str(
        thresholds(work / "data_quality.toml", args.clip_seconds)
    )
    os.environ["MUSICVAE_INGEST_SCHEDULE"] = "manual"
    conf = (
        None
        if args.no_retrain
        else {"epochs": args.epochs, "seed": 0, "audio_frontend": args.frontend}
    )
    measured = work / ("configs-ingest-validate.json" if args.no_retrain else "configs.json")
    configs = json.loads(measured.read_text()) if args.keep and measured.exists() else {}
    for name in args.configs:
        sharded, workers = CONFIGS[name]
        shard_size = (args.shard_size or sized_shards(args.tracks)) if sharded else args.tracks + 1
        result = run_config(landing, shard_size, workers, conf)
        configs[label(result, args.tracks)] = result
        measured.write_text(json.dumps(configs, indent=2))  # kept if a later one fails
    report = {
        "tracks": args.tracks,
        "clip_seconds": args.clip_seconds,
        "frontend": None if args.no_retrain else args.frontend,
        "configs": dict(sorted(configs.items(), key=lambda c: c[0] != ONE_TASK)),
        "machine": machine_info(),
    }
    if ONE_TASK in configs:
        report |= speedups(configs)
        report["extrapolated_1m"] = extrapolate(
            configs[ONE_TASK]["stages"], args.tracks, 1_000_000, (1, 2, 8, 32)
        )
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results[f"pipeline_{args.tracks}" + ("_ingest_validate" if args.no_retrain else "")] = report
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(report)
    return 0


def print_table(report: dict) -> None:
    configs = report["configs"]
    names = list(configs)
    stages = list(next(iter(configs.values()))["stages"])
    print(
        f"\nsharded stages, {report['tracks']} tracks of {report['clip_seconds']} s clips, "
        + (f"{report['frontend']} front end" if report["frontend"] else "no retrain")
    )
    print("  stage       " + "".join(f"{n:>22}" for n in names))
    for stage in stages:
        cells = []
        for name, c in configs.items():
            cell = f"{c['stages'][stage]['wall_s']:.0f} s"
            if name in report.get("speedup_vs_one_task", {}):
                cell += f" ({report['speedup_vs_one_task'][name][stage]:.2f}x)"
            cells.append(f"{cell:>22}")
        print(f"  {stage:<12}" + "".join(cells))
    print("  (x: the one task's time over this one's; above 1 is faster)")
    print("\nlargest task process on the workers while each stage ran (MB)")
    for stage in stages:
        cells = "".join(f"{c['stages'][stage]['task_peak_rss_mb']:>22}" for c in configs.values())
        print(f"  {stage:<12}{cells}")
    print("\npeak resident memory (MB); '(children)': the largest process a server started")
    roles = sorted({r for c in configs.values() for r in c["peak_rss_mb_by_process"]})
    for role in roles:
        cells = "".join(f"{c['peak_rss_mb_by_process'].get(role, 0):>22}" for c in configs.values())
        print(f"  {role:<34}{cells[12:]}")
    m = report["machine"]
    print(f"machine: {describe_machine(m)}, {m['platform']}")
    if "extrapolated_1m" not in report:
        return
    print(
        "\nextrapolated to 1M tracks (the one task's per-track rates, a machine like this one "
        "per worker)"
    )
    for name, e in report["extrapolated_1m"].items():
        stages = ", ".join(f"{s} {t / 60:.0f}" for s, t in e["stages_s"].items())
        print(f"  {name:<12} {e['total_s'] / 60:>6.0f} min ({stages})")


if __name__ == "__main__":
    raise SystemExit(main())
