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
musicnn   the pretrained front end (`MusicnnFrontend.extract`, as the pipeline runs it): per
          clip, decode, resampling to 16 kHz, 96-band log-mel and the network on every 3 s
          patch; the same threads on the CPU, the network on the GPU on CUDA.
          Not the same work as the mel paths: its figure is clips/s, decode included.

Each path first runs once, untimed, on one clip (imports, numba/oneDNN warm-up, FFT plans), and
every file is read once before timing so both paths find it in the page cache. Then the two
paths take turns for `--repeats` rounds and each path's fastest round counts (the one least
disturbed by other work on a shared machine); the JSON keeps every round, and the CPU time of
each (both cores together), which says how much work a path does whatever else runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from benchmarks.research_model import research_features
from musicvae.local.sample.layout import build_sample
from musicvae.model.features import MelConfig, decode_audio, extract_mels
from musicvae.model.frontends import MusicnnFrontend

log = logging.getLogger("benchmarks.features")

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
DEFAULT_OUT = HERE / "results" / "features.json"
WORKERS = 2  # one per core of the reference machine


def log_to_console() -> None:
    """Timestamped progress lines on stderr; the S3 client's retry warnings stay out of them."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("urllib3").setLevel(logging.ERROR)


VECTOR_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile")


def cpu_name() -> str:
    """The CPU's model and its widest vector units: machines of one kind have differed
    threefold in the front end's speed by these alone (AVX2 only against AVX-512 and AMX)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    for line in lines:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    units = [f for f in VECTOR_FLAGS if f in flags]
    return f"{fields.get('model name', platform.machine())} ({' '.join(units) or 'no AVX2'})"


def describe_machine(m: dict) -> str:
    """One line for a benchmark's printout: the machine a result's figures came from."""
    return f"{m['cpu_count']} CPUs ({m.get('cpu', '?')}), load {m.get('load_average_1m', '?')}"


def machine_info() -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu_name(),
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


def musicnn(paths: list[Path], device: str) -> np.ndarray:
    frontend = MusicnnFrontend()
    cached = frontend.extract(Path.read_bytes, paths, torch.device(device), WORKERS)
    return frontend.stack([frontend.row(c) for c in cached])


def research_one_thread(paths: list[Path]) -> np.ndarray:
    """The research path with its BLAS on one thread: on a busy machine OpenBLAS's second
    thread waits far more than it works, so this is the research code at its fastest here."""
    with threadpool_limits(1):
        return research_features(paths)


def decode_only(paths: list[Path]) -> np.ndarray:
    """MP3 decoding alone, on one thread: the work every path has to do."""
    return np.array([len(decode_audio(path.read_bytes())[0]) for path in paths])


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

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    contenders: dict[str, Callable[[list[Path]], np.ndarray]] = {
        "research": research_features,
        "research_1thread": research_one_thread,
        "decode": decode_only,
        **{_key(d): functools.partial(ours, cfg=cfg, device=d) for d in devices},
        **{_key(d, "musicnn"): functools.partial(musicnn, device=d) for d in devices},
    }
    log.info("warm-up: one untimed clip through each path")
    for fn in contenders.values():
        fn(paths[:1])

    # The paths take turns, so a burst of load from elsewhere hits all alike; the best round of
    # each is the one least disturbed.
    runs: dict[str, list[dict]] = {key: [] for key in contenders}
    shapes: dict[str, list[int]] = {}
    for round_ in range(1, repeats + 1):
        for key, fn in contenders.items():
            out, times = timed(lambda fn=fn: fn(paths))
            runs[key].append(times)
            shapes[key] = list(out.shape[1:])
            log.info(
                "round %d/%d %s: %.2fs, %.2f clips/s, %.1f ms CPU per clip",
                round_,
                repeats,
                key,
                times["total_s"],
                clips / times["total_s"],
                1000 * times["cpu_s"] / clips,
            )

    result = {
        "machine": machine,
        "clips": clips,
        "repeats": repeats,
        "workers": WORKERS,
        "mel_config": cfg.to_dict(),
    }
    for key, rounds in runs.items():
        best = min(rounds, key=lambda r: r["total_s"])
        result[f"{key}_shape"] = shapes[key]
        result[f"{key}_seconds"] = best["total_s"]
        result[f"{key}_cpu_ms_per_clip"] = 1000 * best["cpu_s"] / clips
        result[f"{key}_clips_per_s"] = clips / best["total_s"]
        result[f"{key}_rounds_seconds"] = [r["total_s"] for r in rounds]
    for key in (k for k in runs if k.startswith("ours")):
        suffix = key.removeprefix("ours")
        result[f"speedup{suffix}"] = result[f"{key}_clips_per_s"] / result["research_clips_per_s"]
        result[f"speedup{suffix}_vs_1thread"] = (
            result[f"{key}_clips_per_s"] / result["research_1thread_clips_per_s"]
        )
    # MP3 decoding alone, spread over WORKERS cores with nothing else to do: no path that
    # decodes every clip can beat this ratio to the research path.
    result["decode_cap_vs_1thread"] = (
        WORKERS * result["decode_clips_per_s"] / result["research_1thread_clips_per_s"]
    )
    return result


def _key(device: str, path: str = "ours") -> str:
    return path if device == "cpu" else f"{path}_{device}"


LABELS = {
    "research": "research (librosa, per file)",
    "research_1thread": "research, BLAS on 1 thread",
    "decode": "MP3 decode only, 1 thread",
    "ours": f"ours (CPU, {WORKERS} threads)",
    "ours_cuda": "ours (CUDA log-mel)",
    "musicnn": f"musicnn front end (CPU, {WORKERS} thr.)",
    "musicnn_cuda": "musicnn front end (CUDA)",
}


def table(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"Feature extraction, {result['clips']} MP3 clips, best of {result['repeats']} rounds; "
        f"{describe_machine(m)}",
        f"{'path':<30} {'image':>9} {'seconds':>8} {'clips/s':>8} {'CPU ms/clip':>12} "
        f"{'x research':>11} {'x 1-thread':>11}",
    ]
    for key, label in LABELS.items():
        if f"{key}_clips_per_s" not in result:
            continue
        rate = result[f"{key}_clips_per_s"]
        image = "x".join(str(s) for s in result[f"{key}_shape"]) or "-"
        lines.append(
            f"{label:<30} {image:>9} {result[f'{key}_seconds']:>8.2f} {rate:>8.2f} "
            f"{result[f'{key}_cpu_ms_per_clip']:>12.1f} "
            f"{rate / result['research_clips_per_s']:>10.2f}x "
            f"{rate / result['research_1thread_clips_per_s']:>10.2f}x"
        )
    lines.append(
        f"MP3 decoding alone on {WORKERS} cores caps any path at "
        f"{result['decode_cap_vs_1thread']:.2f}x the 1-thread research path"
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
