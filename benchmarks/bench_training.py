"""Training throughput: musicvae's HybridVAE against the research VAE, at the same batch size.

    python -m benchmarks.bench_training [--tracks 256] [--batch-size 16] [--steps 30]
                                        [--out benchmarks/results/training.json]

Throughput does not depend on what the tensors hold, so both models train on random tensors of
their real shapes:

ours      HybridVAE at the pipeline's defaults (MelConfig(): 64 mels x 625 frames, 512 TF-IDF
          terms, latent 32, width 32) trained by `musicvae.model.train.fit` itself, i.e. the figure
          user gets: batch assembly, modality dropout, the product-of-experts loss and Adam. fit
          runs `--epochs` (2) short epochs over `--tracks` rows (85 % of them train) and reports
          samples/s per epoch; the first epoch is the warm-up, the figure is the mean of the rest.
          Run at `--batch-size` (the research value, 16) and at fit's own default (32).
research  ResearchVAE on 64 x 1200 images and 100 TF-IDF terms with its loss and Adam(lr 1e-3),
          `--steps` timed steps after 3 untimed warm-up steps, at `--batch-size`. On a busy
          machine the timed steps stop early once they have used `--research-budget` seconds
          (150; at least 5 steps run), so the whole run stays under 5 minutes on 2 cores; the
          JSON records how many steps were timed.

Seconds per epoch are computed for a 2000-track epoch (the MERGE Bimodal Balanced size) from
the samples/s; they exclude validation.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_features import describe_machine, machine_info
from benchmarks.research_model import (
    RESEARCH_BATCH_SIZE,
    RESEARCH_FRAMES,
    RESEARCH_N_MELS,
    RESEARCH_VOCAB,
    ResearchVAE,
    research_batch,
    research_optimizer,
    research_step,
)
from musicvae.model.features import MelConfig
from musicvae.model.train import fit
from musicvae.model.trained import TrainConfig, TrainingData

log = logging.getLogger("benchmarks.training")

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "training.json"
EPOCH_TRACKS = 2000  # the size of the MERGE Bimodal Balanced audio+lyrics set
OUR_VOCAB = 512  # LyricsVectorizer's default vocabulary
WARMUP_STEPS = 3
MIN_TIMED_STEPS = 5


def _tfidf_like(rng: np.random.Generator, rows: int, vocab: int) -> np.ndarray:
    """Non-negative, L2-normalised rows, mostly zeros: the shape and scale of TF-IDF."""
    x = rng.random((rows, vocab), dtype=np.float32) * (rng.random((rows, vocab)) < 0.1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


def bench_ours(tracks: int, batch_size: int, epochs: int, seed: int = 0) -> dict:
    cfg = MelConfig()
    rng = np.random.default_rng(seed)
    data = TrainingData(
        audio=(
            rng.standard_normal((tracks, cfg.n_mels, cfg.n_frames), dtype=np.float32) * 15 - 40
        ).astype(np.float16),  # dB-like, float16 as the feature cache stores it
        has_audio=np.ones(tracks, dtype=bool),
        lyrics=_tfidf_like(rng, tracks, OUR_VOCAB),
        has_lyrics=np.ones(tracks, dtype=bool),
    )
    config = TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, patience=epochs + 1)
    log.info("ours: fit on %d rows, batch %d, %d epochs ...", tracks, batch_size, epochs)
    trained = fit(data, config)
    rates = [r["samples_per_s"] for r in trained.history]
    n_val = min(max(round(tracks * config.val_fraction), 1), tracks - 1)  # as fit splits
    timed = rates[1:] or rates  # the first epoch pays for the warm-up
    rate = float(np.mean(timed))
    return {
        "model": "HybridVAE",
        "input": [cfg.n_mels, cfg.n_frames],
        "vocab": OUR_VOCAB,
        "batch_size": batch_size,
        "n_params": sum(p.numel() for p in trained.model.parameters()),
        "train_rows_per_epoch": tracks - n_val,
        "epoch_samples_per_s": rates,
        "samples_per_s": rate,
        "seconds_per_2000_track_epoch": EPOCH_TRACKS / rate,
    }


def bench_research(
    tracks: int, batch_size: int, steps: int, budget_s: float = math.inf, seed: int = 0
) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    audio = rng.random((tracks, RESEARCH_N_MELS, RESEARCH_FRAMES), dtype=np.float32)
    lyrics = _tfidf_like(rng, tracks, RESEARCH_VOCAB)
    model = ResearchVAE()
    opt = research_optimizer(model)
    order = np.concatenate(
        [rng.permutation(tracks) for _ in range((WARMUP_STEPS + steps) * batch_size // tracks + 1)]
    )

    def step(i: int) -> float:
        idx = np.sort(order[i * batch_size : (i + 1) * batch_size])
        return float(research_step(model, opt, *research_batch(audio, lyrics, idx))["total"])

    log.info(
        "research: %.1fM parameters, batch %d, %d warm-up + %d timed steps ...",
        model.n_params / 1e6,
        batch_size,
        WARMUP_STEPS,
        steps,
    )
    for i in range(WARMUP_STEPS):
        step(i)
    step_seconds = []
    for i in range(WARMUP_STEPS, WARMUP_STEPS + steps):
        started = time.perf_counter()
        loss = step(i)
        step_seconds.append(time.perf_counter() - started)
        if sum(step_seconds) > budget_s and len(step_seconds) >= MIN_TIMED_STEPS < steps:
            log.warning(
                "research: %.0fs budget spent after %d of %d timed steps; stopping there",
                budget_s,
                len(step_seconds),
                steps,
            )
            break
        if (i - WARMUP_STEPS + 1) % 10 == 0:
            log.info(
                "research: step %d/%d, %.2fs/step, loss %.4g",
                i - WARMUP_STEPS + 1,
                steps,
                float(np.mean(step_seconds[-10:])),
                loss,
            )
    rate = batch_size * len(step_seconds) / sum(step_seconds)
    return {
        "model": "ResearchVAE",
        "input": [RESEARCH_N_MELS, RESEARCH_FRAMES],
        "vocab": RESEARCH_VOCAB,
        "batch_size": batch_size,
        "n_params": model.n_params,
        "steps": len(step_seconds),
        "steps_asked": steps,
        "median_step_s": float(np.median(step_seconds)),
        "samples_per_s": rate,
        "seconds_per_2000_track_epoch": EPOCH_TRACKS / rate,
    }


def run(tracks: int, batch_size: int, steps: int, epochs: int, budget_s: float = math.inf) -> dict:
    torch.set_num_threads(os.cpu_count() or 1)
    research = bench_research(tracks, batch_size, steps, budget_s)
    log.info("research: %.2f samples/s", research["samples_per_s"])
    ours_same = bench_ours(tracks, batch_size, epochs)
    log.info("ours (batch %d): %.2f samples/s", batch_size, ours_same["samples_per_s"])
    result = {
        "machine": machine_info(),
        "tracks": tracks,
        "batch_size": batch_size,
        "research": research,
        "ours": ours_same,
        "speedup": ours_same["samples_per_s"] / research["samples_per_s"],
    }
    default_batch = TrainConfig().batch_size
    if default_batch != batch_size:
        ours_default = bench_ours(tracks, default_batch, epochs)
        log.info("ours (batch %d): %.2f samples/s", default_batch, ours_default["samples_per_s"])
        result["ours_default_batch"] = ours_default
        result["speedup_default_batch"] = ours_default["samples_per_s"] / research["samples_per_s"]
    return result


def table(result: dict) -> str:
    m = result["machine"]
    research = result["research"]
    rows = [("research (ResearchVAE)", research), ("ours (HybridVAE, fit)", result["ours"])]
    if "ours_default_batch" in result:
        rows.append(("ours (HybridVAE, fit)", result["ours_default_batch"]))
    lines = [
        f"Training throughput, CPU; {describe_machine(m)}, {m['torch_threads']} torch threads",
        f"{'model':<24} {'input':>8} {'params':>8} {'batch':>5} {'samples/s':>9} "
        f"{'s/2000-track epoch':>18} {'speed-up':>8}",
    ]
    for label, r in rows:
        shape = "x".join(str(s) for s in r["input"])
        speedup = r["samples_per_s"] / research["samples_per_s"]
        lines.append(
            f"{label:<24} {shape:>8} {r['n_params'] / 1e6:>7.2f}M {r['batch_size']:>5} "
            f"{r['samples_per_s']:>9.2f} {r['seconds_per_2000_track_epoch']:>18.1f} "
            f"{speedup:>7.2f}x"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=256, help="rows of synthetic data")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=RESEARCH_BATCH_SIZE,
        help="batch size for both models (default 16, the research value)",
    )
    parser.add_argument("--steps", type=int, default=30, help="timed research steps")
    parser.add_argument(
        "--epochs", type=int, default=2, help="fit epochs for ours (first: warm-up)"
    )
    parser.add_argument(
        "--research-budget",
        type=float,
        default=150.0,
        help="seconds of timed research steps before stopping early (default 150)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    args = parser.parse_args(argv)
    if args.tracks < 2 * args.batch_size or args.steps < 1 or args.epochs < 1:
        parser.error("need --tracks >= 2 x --batch-size, --steps >= 1 and --epochs >= 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = run(args.tracks, args.batch_size, args.steps, args.epochs, args.research_budget)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
