"""Validation throughput: merge_validate over the 2000-track sample, and a rerun with nothing new.

    python -m benchmarks.bench_validation [--tracks 2000] [--out benchmarks/results/validation.json]

The sample catalogue is built once under benchmarks/.cache/sample-<N> (the same one bench_model
uses). A fresh database and bucket on the benchmark's own local stack receive it through
run_ingest (timed, but not the target), then run_validation is timed twice:

first   every track is new: fetch from object storage, decode the MP3, profile, judge, run the
        Great Expectations suites, build and upload the Data Docs, write the results. Reported as
        tracks/s; target >= 20 tracks/s on a 2-core machine.
rerun   nothing new: ingest again (unchanged landing zone) and validate again. Target < 5 s.
        The validation rerun alone is reported too.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import uuid
from dataclasses import replace
from pathlib import Path

from benchmarks.bench_features import log_to_console, machine_info
from musicvae.ingest.run import run_ingest
from musicvae.local.sample.layout import build_sample
from musicvae.local.stack import Stack
from musicvae.quality.validate import run_validation

log = logging.getLogger("benchmarks.validation")
HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
DEFAULT_OUT = HERE / "results" / "validation.json"
TARGET_TRACKS_PER_S = 20.0
TARGET_RERUN_S = 5.0


def timed(fn, *args):
    started = time.monotonic()
    value = fn(*args)
    return value, time.monotonic() - started


def measure(stack: Stack, landing: Path) -> dict:
    name = f"bench_validation_{uuid.uuid4().hex[:6]}"
    settings = replace(
        stack.settings(), database_url=stack.create_database(name), bucket=name.replace("_", "-")
    )
    ingest, ingest_s = timed(run_ingest, settings, "bench-ingest-1", str(landing))
    first, first_s = timed(run_validation, settings, "bench-validate-1")
    again, again_ingest_s = timed(run_ingest, settings, "bench-ingest-2", str(landing))
    rerun, rerun_validate_s = timed(run_validation, settings, "bench-validate-2")
    assert not again.changed and rerun.tracks_checked == 0, "the rerun found new work"
    return {
        "tracks_ingested": ingest.tracks_new,
        "ingest_s": round(ingest_s, 2),
        "tracks_validated": first.tracks_checked,
        "tracks_valid": first.tracks_valid,
        "tracks_quarantined": first.tracks_quarantined,
        "validate_s": round(first_s, 2),
        "tracks_per_s": round(first.tracks_checked / first_s, 1),
        "rerun_ingest_s": round(again_ingest_s, 2),
        "rerun_validate_s": round(rerun_validate_s, 2),
        "rerun_s": round(again_ingest_s + rerun_validate_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracks", type=int, default=2000)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    log_to_console()
    sample = CACHE / f"sample-{args.tracks}"
    log.info("sample catalogue: %s", build_sample(sample, tracks=args.tracks, seed=0))

    # Its own stack: the other benchmarks stop theirs when they finish.
    stack = Stack(CACHE / "stack-validation")
    stack.up(airflow=False)
    try:
        figures = measure(stack, sample)
    finally:
        stack.down()

    report = {
        "sample_tracks": args.tracks,
        **figures,
        "targets": {"tracks_per_s": TARGET_TRACKS_PER_S, "rerun_s": TARGET_RERUN_S},
        "met": {
            "tracks_per_s": figures["tracks_per_s"] >= TARGET_TRACKS_PER_S,
            "rerun_s": figures["rerun_s"] < TARGET_RERUN_S,
        },
        "machine": machine_info(),  # its load is the end's, after the timed runs
    }
    f = figures
    print(f"\nvalidation of the {args.tracks}-track sample")
    print(f"  {'measure':<34} {'result':>12} {'target':>10}")
    print(f"  {'ingest (not a target)':<34} {f['ingest_s']:>10.1f} s {'':>10}")
    print(
        f"  {'validate, every track new':<34} {f['tracks_per_s']:>6.1f} tr/s "
        f"{'>= 20':>10}   ({f['tracks_validated']} tracks in {f['validate_s']:.1f} s)"
    )
    print(
        f"  {'rerun with nothing new':<34} {f['rerun_s']:>10.2f} s {'< 5 s':>10}   "
        f"(ingest {f['rerun_ingest_s']:.2f} s + validate {f['rerun_validate_s']:.2f} s)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
