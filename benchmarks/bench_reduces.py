"""The memory of the tasks around the mapped shards: the plans that split a stage and the last
tasks (reduces) of ingest and validation, by the size of the batch and of the catalogue.

    python -m benchmarks.bench_reduces [--tracks 20000 100000]

A mapped stage's shards each hold MUSICVAE_SHARD_SIZE tracks; what its first and last tasks
hold decides whether the stage scales. For each size N, on a fresh database of the local stack
(PostgreSQL and the S3 server, no Airflow), this writes the shard outputs the mapped tasks would
leave (synthetic rows and profiles: none of these tasks decodes audio) and runs, each in a
process of its own whose peak resident memory is the task's:

- `ingest plan`: merge_ingest's first task, over a landing zone of N tracks (bench_workers'
  catalogue of 0.1 s clips, built once under benchmarks/.cache);
- `ingest batch`: merge_ingest's last task over N new tracks (an empty catalogue);
- `validate plan` and `validate batch`: merge_validate's first and last tasks over those N
  tracks (all in status `new`), Great Expectations suites and Data Docs included;
- `recluster plan`: catalogue_recluster's first task, over the N tracks (95% valid);
- `ingest into catalogue`: merge_ingest's last task over one shard of new tracks, into the N
  stored.

Memory bounded by the shard means that a task's peak stays the same from one N to the next.
Figures go to benchmarks/results/scale.json under "reduces".
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from benchmarks.bench_features import log_to_console, machine_info
from benchmarks.bench_scale import champion, fresh_settings, peak_rss_mb, scale_stack
from benchmarks.bench_workers import CACHE, catalogue
from musicvae.catalogue.shards import plan
from musicvae.core.config import shard_size
from musicvae.core.shards import output_key, run_prefix
from musicvae.core.storage import ObjectStore
from musicvae.ingest.run import plan_ingest, run_ingest
from musicvae.local.stack import Stack
from musicvae.quality.validate import plan_validation, run_validation

log = logging.getLogger("benchmarks.reduces")
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "scale.json"
SUBSET = "bimodal_bench"  # no row count is expected of it (data_quality.toml [subset_rows])
QUARANTINED_EVERY = 20  # one track in 20 fails a check, as a batch with defects would


def song(i: int) -> tuple[str, str]:
    """Audio and lyrics ids in MERGE's shape (A1000-0 ...), distinct for a million tracks."""
    return f"A{1000 + i // 10000}-{i % 10000}", f"L{1000 + i // 10000}-{i % 10000}"


def track_row(i: int, run_id: str) -> dict:
    """A row as ingest's upload task leaves it for one track."""
    audio, lyrics = song(i)
    meta = {
        "Audio_Song": audio,
        "Lyric_Song": lyrics,
        "Quadrant": f"Q{i % 4 + 1}",
        "Artist": f"Artist {i % 977}",
        "Title": f"Title {i}",
        "Genres": "Pop; Rock",
    }
    sha = f"{i:064x}"
    return {
        "track_id": f"{SUBSET}/{audio}",
        "subset": SUBSET,
        "song_id": audio,
        "audio_song": audio,
        "lyric_song": lyrics,
        "quadrant": meta["Quadrant"],
        "artist": meta["Artist"],
        "title": meta["Title"],
        "genres": ["Pop", "Rock"],
        "genre": "Pop",
        "year": None,
        "metadata": meta,
        "audio_sha256": sha,
        "audio_key": f"raw/audio/{sha}.mp3",
        "audio_bytes": 480_000,
        "lyrics_sha256": sha,
        "lyrics_key": f"raw/lyrics/{sha}.txt",
        "lyrics_bytes": 1_200,
        "status": "new",
        "status_reason": None,
        "ingest_run_id": run_id,
    }


def uploaded_shards(settings, run_id: str, first: int, n: int) -> list[dict]:
    """Ingest's plan and the outputs of its upload tasks for tracks first..first+n-1."""
    store = ObjectStore(settings)
    prefix = run_prefix("ingest", run_id)
    store.put_json(
        f"{prefix}/plan.json", {"landing": "bench", "files_seen": 2 * n, "rejections": []}
    )
    rows = [track_row(i, run_id) for i in range(first, first + n)]
    shards = []
    for index in range(0, n, shard_size()):
        part = rows[index : index + shard_size()]
        shard = {"landing": "bench", "run_id": run_id, "index": len(shards)}
        shard |= {"key": f"{prefix}/shard-{len(shards):05d}", "n_items": len(part)}
        store.put_json(output_key(shard, "rows.json"), {"rows": part, "cache": {}, "uploaded": 0})
        shards.append(shard)
    return shards


def profile(i: int) -> dict:
    """A track's profile and its checks as validation's profile task leaves them."""
    issues = []
    if i % QUARANTINED_EVERY == 0:
        issues.append(("audio_clipping", "error", "1.2% of samples clipped"))
    return {
        "track_id": f"{SUBSET}/{song(i)[0]}",
        "profile": {
            "audio_decodable": True,
            "audio_error": None,
            "codec": "MP3",
            "sample_rate": 44100,
            "channels": 2,
            "duration_s": 30.0 + i % 7,
            "rms_dbfs": -14.0 - i % 5,
            "peak": 0.9,
            "clipped_fraction": 0.012 if issues else 0.0,
            "leading_silence_s": 0.01,
            "trailing_silence_s": 0.2,
            "digital_silence": False,
            "silence_dbfs": -60.0,
            "profiled": True,
            "lyrics_encoding": "utf-8",
            "lyrics_utf8": True,
            "lyrics_bom": False,
            "lyrics_chars": 900 + i % 300,
            "lyrics_words": 180 + i % 60,
            "lyrics_empty": False,
            "lyrics_garbage_ratio": 0.0,
            "pairing": "paired",
            "expected_pairing": "paired",
            "duplicate_of": None,
        },
        "issues": issues,
    }


def profiled(settings, shards: list[dict]) -> list[dict]:
    """The outputs of validation's profile tasks for the shards of its plan."""
    store = ObjectStore(settings)
    done = 0
    for shard in shards:
        checks = [profile(i) for i in range(done, done + shard["n_items"])]
        store.put_json(output_key(shard, "checks.json"), checks)
        done += shard["n_items"]
    return shards


def measured(task, *args) -> tuple[dict, object]:
    """`task(*args)` in this process, timed, with the process's peak memory; and what it
    returned."""
    log_to_console()
    imported = rss_mb()  # this module's imports (torch among them) are not the task's
    started = time.perf_counter()
    out = task(*args)
    seconds = round(time.perf_counter() - started, 1)
    return {
        "seconds": seconds,
        "peak_rss_mb": peak_rss_mb(),
        "above_start_mb": peak_rss_mb() - imported,
    }, out


def rss_mb() -> int:
    status = Path("/proc/self/status").read_text()
    kb = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
    return round(int(kb) / 1024)


def in_own_process(task, *args) -> tuple[dict, object]:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(measured, task, *args).result()


def reduces(stack: Stack, n: int) -> dict:
    settings = fresh_settings(stack, "bench_reduces")
    runs = {}

    def timed(name: str, task, *args):
        runs[name], out = in_own_process(task, *args)
        log.info("N=%d, %s: %s", n, name, runs[name])
        return out

    timed(
        "ingest plan", plan_ingest, settings, "plan", str(catalogue(CACHE / f"reduces-{n}", n, 0.1))
    )
    timed(
        "ingest batch",
        run_ingest,
        settings,
        "batch",
        None,
        uploaded_shards(settings, "batch", 0, n),
    )
    shards = timed("validate plan", plan_validation, settings, "validate")
    timed("validate batch", run_validation, settings, "validate", None, profiled(settings, shards))
    champion(settings, n, seed=0)
    timed("recluster plan", plan, settings, "recluster")
    more = uploaded_shards(settings, "more", n, shard_size())
    timed("ingest into catalogue", run_ingest, settings, "more", None, more)
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracks", type=int, nargs="+", default=[20_000, 100_000])
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    log_to_console()
    with scale_stack() as stack:
        by_size = {n: reduces(stack, n) for n in sorted(args.tracks)}
    report = {
        "machine": machine_info(),
        "shard_size": shard_size(),
        "runs_by_tracks": {str(n): runs for n, runs in by_size.items()},
    }
    out = json.loads(args.out.read_text()) if args.out.exists() else {}
    out["reduces"] = report
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"\nreduces, shards of {shard_size()} tracks: seconds / peak memory above the start")
    names = list(next(iter(by_size.values())))
    print(f"{'tracks':>9}  " + "  ".join(f"{name:>24}" for name in names))
    for n, runs in by_size.items():
        cells = [f"{runs[k]['seconds']:>9.1f} s / {runs[k]['above_start_mb']:>6} MB" for k in names]
        print(f"{n:>9,}  " + "  ".join(f"{c:>24}" for c in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
