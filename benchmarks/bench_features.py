"""Feature extraction throughput: musicvae's path against the research code's librosa path.

    python -m benchmarks.bench_features [--clips 100] [--repeats 3]
                                        [--out benchmarks/results/features.json]

Both paths start from MP3 files of the sample catalogue (built once under
benchmarks/.cache/sample-<N>) and end with one log-mel image per clip:

research  `research_features(paths)`: per file, librosa.load(sr=22050, duration=29) ->
          melspectrogram(n_mels=64, hop 533) -> power_to_db -> min-max, 64 x 1200.
ours      `extract_mels` on 2 threads, as the pipeline's feature task runs it: on the CPU each
          thread takes one file at a time through read, decode, fit and log-mel (torch on one
          thread), 64 x 625 with MelConfig() defaults; on CUDA, when a GPU is present, the
          threads decode and the GPU computes the log-mels of the whole set.

Each path first runs once, untimed, on one clip (imports, numba/oneDNN warm-up, FFT plans), and
every file is read once before timing so both paths find it in the page cache. Then the two
paths take turns for `--repeats` rounds and each path's fastest round counts (the one least
disturbed by other work on a shared machine); the JSON keeps every round, and the CPU time of
each (both cores together), which says how much work a path does whatever else runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.research_model import research_features
from musicvae.features import MelConfig, extract_mels
from musicvae.sample import build_sample

log = logging.getLogger("benchmarks.features")

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
DEFAULT_OUT = HERE / "results" / "features.json"
WORKERS = 2  # one per core of the reference machine


def machine_info() -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    if hasattr(os, "getloadavg"):
        # The machine may be shared: the 1-minute load at the start says how busy it was.
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    return info


def sample_mp3s(clips: int) -> list[Path]:
    """`clips` MP3 files of a sample catalogue of `clips` tracks, built once and then reused."""
    out_dir = CACHE / f"sample-{clips}"
    CACHE.mkdir(parents=True, exist_ok=True)
    ignore = CACHE / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# benchmark scratch space, rebuilt on demand\n*\n")
    started = time.perf_counter()
    summary = build_sample(out_dir, tracks=clips, seed=0, progress=False)
    log.info(
        "sample catalogue: %d tracks at %s (%d files written, %.1fs)",
        clips,
        summary.root,
        summary.written,
        time.perf_counter() - started,
    )
    paths = sorted(summary.root.glob("audio/*/*.mp3"))
    if len(paths) < clips:
        raise RuntimeError(f"the sample holds {len(paths)} MP3 files, {clips} asked for")
    return paths[:clips]


def ours(paths: list[Path], cfg: MelConfig, device: str) -> np.ndarray:
    return extract_mels(Path.read_bytes, paths, cfg, device, workers=WORKERS)


def timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, dict]:
    started, cpu = time.perf_counter(), time.process_time()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, {"total_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu}


def run(clips: int, repeats: int = 3) -> dict:
    torch.set_num_threads(os.cpu_count() or 1)
    cfg = MelConfig()
    paths = sample_mp3s(clips)
    for path in paths:  # page cache: neither path should pay for the first disk read
        path.read_bytes()
    machine = machine_info()

    log.info("warm-up: one untimed clip through each path")
    research_features(paths[:1])
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        ours(paths[:1], cfg, device)

    # Research and ours take turns, so a burst of load from elsewhere hits both alike; the best
    # round of each path is the one least disturbed.
    runs: dict[str, list[dict]] = {"research": [], **{_key(d): [] for d in devices}}
    shapes: dict[str, list[int]] = {}
    for round_ in range(1, repeats + 1):
        log.info("round %d/%d: research path (librosa, one file at a time) ...", round_, repeats)
        research, times = timed(lambda: research_features(paths))
        runs["research"].append(times)
        shapes["research"] = list(research.shape[1:])
        log.info("research: %.2fs, %.2f clips/s", times["total_s"], clips / times["total_s"])
        for device in devices:
            feats, times = timed(lambda device=device: ours(paths, cfg, device))
            runs[_key(device)].append(times)
            shapes[_key(device)] = list(feats.shape[1:])
            log.info(
                "ours on %s (%d threads): %.2fs, %.2f clips/s",
                device,
                WORKERS,
                times["total_s"],
                clips / times["total_s"],
            )

    result = {"machine": machine, "clips": clips, "repeats": repeats, "mel_config": cfg.to_dict()}
    for key, rounds in runs.items():
        best = min(rounds, key=lambda r: r["total_s"])
        result[f"{key}_shape"] = shapes[key]
        result[f"{key}_seconds"] = best["total_s"]
        result[f"{key}_cpu_ms_per_clip"] = 1000 * best["cpu_s"] / clips
        result[f"{key}_clips_per_s"] = clips / best["total_s"]
        result[f"{key}_rounds_seconds"] = [r["total_s"] for r in rounds]
    result["speedup"] = result["ours_clips_per_s"] / result["research_clips_per_s"]
    if "ours_cuda_clips_per_s" in result:
        result["speedup_cuda"] = result["ours_cuda_clips_per_s"] / result["research_clips_per_s"]
    return result


def _key(device: str) -> str:
    return "ours" if device == "cpu" else f"ours_{device}"


def table(result: dict) -> str:
    m = result["machine"]
    rows = [
        (
            "research (librosa, per file)",
            result["research_shape"],
            result["research_seconds"],
            result["research_clips_per_s"],
            1.0,
        )
    ]
    for key, label in (("ours", "ours (CPU)"), ("ours_cuda", "ours (CUDA mel)")):
        if f"{key}_clips_per_s" in result:
            rows.append(
                (
                    label,
                    result[f"{key}_shape"],
                    result[f"{key}_seconds"],
                    result[f"{key}_clips_per_s"],
                    result[f"{key}_clips_per_s"] / result["research_clips_per_s"],
                )
            )
    lines = [
        f"Feature extraction, {result['clips']} MP3 clips, best of {result['repeats']} rounds; "
        f"{m['cpu_count']} CPUs, "
        f"{m['torch_threads']} torch threads, load {m.get('load_average_1m', '?')}",
        f"{'path':<30} {'image':>9} {'seconds':>8} {'clips/s':>8} {'speed-up':>9}",
    ]
    for label, shape, seconds, rate, speedup in rows:
        image = "x".join(str(s) for s in shape)
        lines.append(f"{label:<30} {image:>9} {seconds:>8.2f} {rate:>8.2f} {speedup:>8.2f}x")
    lines.append(
        f"CPU time per clip: research {result['research_cpu_ms_per_clip']:.1f} ms, "
        f"ours {result['ours_cpu_ms_per_clip']:.1f} ms ({WORKERS} threads)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100, help="MP3 clips to time (default 100)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed rounds per path; the best counts (default 3)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    args = parser.parse_args(argv)
    if args.clips < 1 or args.repeats < 1:
        parser.error("--clips and --repeats must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = run(args.clips, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
