"""Clustering quality: our hybrid beta-VAE (musicnn and mel front ends) vs the frozen front end,
PCA and the research model, same data.

Two data sets, each through the path a MERGE download takes (ingest into object storage,
validation, snapshot, cached features), on a local PostgreSQL + S3 stack:
- the MERGE-shaped sample (synthetic audio and lyrics; proves the plumbing, flatters models);
- the real-audio set: Debian game soundtracks in MERGE's audio-only layout, labelled by
  collection, several 30 s windows per track (also scored on one window per track).

    python -m benchmarks.bench_model [--tracks 2000] [--epochs 3] [--musicnn-epochs 100]
        [--seeds 5] [--no-realaudio | --no-sample]

The research model and our mel VAE, both CNNs over log-mel images, get the same `--epochs`
(3: the research model's 80M parameters bound what fits). Our musicnn VAE trains its retrain
default (`--musicnn-epochs`): its MLPs over cached patch features cost seconds per epoch and
need more steps, and that is what a retrain gives users. Besides NMI/ARI/purity (mean ± sd over the
seeds) each representation gets a linear probe and the ARI between its seeds' KMeans
clusterings (1: a retrain with another seed gives the same clusters). The figures and sizes go
to benchmarks/results/model.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks import research_model as research
from benchmarks.bench_features import log_to_console
from musicvae.core.storage import ObjectStore
from musicvae.ingest.run import run_ingest
from musicvae.local.stack import Stack
from musicvae.model import evaluation, frontends
from musicvae.model.baselines import pca, spectral_features, standardise
from musicvae.model.features import LyricsVectorizer
from musicvae.model.frontends import EPOCHS, MelFrontend, MusicnnFrontend
from musicvae.model.inputs import lyrics_texts, training_data
from musicvae.quality.validate import run_validation
from musicvae.registry import versions
from musicvae.registry.snapshots import load_snapshot, take_snapshot
from musicvae.retrain.steps import RetrainParams, prepare_features, train

log = logging.getLogger("benchmarks.model")
CACHE = Path(__file__).resolve().parent / ".cache"
RESULTS = Path(__file__).resolve().parent / "results"


def catalogue(stack: Stack, name: str, landing: Path):
    """A fresh database + bucket, and the landing zone ingested and validated into it."""
    db_name = f"bench_{name}_{uuid.uuid4().hex[:6]}"
    settings = replace(
        stack.settings(),
        database_url=stack.create_database(db_name),
        bucket=db_name.replace("_", "-"),
    )
    started = time.monotonic()
    run_ingest(settings, f"bench-{name}", str(landing))
    run_validation(settings, f"bench-{name}")
    snapshot = take_snapshot(settings)["snapshot_id"]
    for frontend in (MelFrontend, MusicnnFrontend):
        prepare_features(settings, snapshot, frontend.name)
    log.info("%s: ingested, validated and featurised in %.0f s", name, time.monotonic() - started)
    return settings, snapshot


def ours(
    settings, snapshot: str, frontend: str, epochs: int, seeds: list[int], k: int
) -> tuple[list, float]:
    """Our VAE trained through the retrain stage once per seed, for `k` clusters (as a user
    sets `n_clusters`); embeddings of every track."""
    store = ObjectStore(settings)
    tracks = load_snapshot(store, snapshot)
    out, rates = [], []
    for seed in seeds:
        params = RetrainParams(epochs=epochs, seed=seed, audio_frontend=frontend, n_clusters=k)
        candidate = train(settings, snapshot, params)
        mv = versions.ModelVersion(0, snapshot, {}, candidate["artifact_prefix"], {}, "")
        loaded = versions.load(store, mv)
        data = training_data(store, tracks, loaded.frontend, loaded.vectorizer)
        out.append(loaded.model.embed(data))
        rates.append(candidate["metrics"]["samples_per_s"])
    return out, float(np.mean(rates))


def research_runs(landing: Path, settings, snapshot: str, epochs: int, seeds: list[int]):
    """The research model on its own features (librosa, per file), once per seed."""
    store = ObjectStore(settings)
    tracks = load_snapshot(store, snapshot)
    files = {p.stem: p for p in landing.rglob("*.mp3")}
    audio_ids = [t["track_id"].split("/", 1)[1] for t in tracks]
    started = time.monotonic()
    audio = research.research_features([files[i] for i in audio_ids])
    lyrics = research.research_lyrics(lyrics_texts(store, tracks))
    log.info("research features: %d clips in %.0f s", len(tracks), time.monotonic() - started)
    out, rates = [], []
    for seed in seeds:
        model, history = research.train_research(audio, lyrics, epochs=epochs, seed=seed)
        out.append(research.embed_research(model, audio, lyrics))
        rates.append(np.mean([h["samples_per_s"] for h in history]))
    return out, float(np.mean(rates))


def baselines(settings, snapshot: str) -> dict:
    """Direct spectral statistics of the log-mels our mel VAE sees, and the pooled features of
    the frozen front end our musicnn VAE sees; each beside the lyrics for PCA."""
    store = ObjectStore(settings)
    tracks = load_snapshot(store, snapshot)
    vectorizer = LyricsVectorizer().fit(lyrics_texts(store, tracks))
    mels = training_data(store, tracks, MelFrontend(), vectorizer)
    spectral = spectral_features(mels.audio)
    pooled = frontends.pooled(training_data(store, tracks, MusicnnFrontend(), vectorizer).audio)
    return {
        "spectral": spectral,
        "both": np.hstack([spectral, mels.lyrics]),
        "frontend": pooled,
        "frontend+lyrics": np.hstack([pooled, mels.lyrics]),
    }


def linear_probe(x: np.ndarray, tracks: list[dict], groups: list[str]) -> dict:
    """How much of the label a linear read-out of `x` finds when it is TOLD the labels: a
    logistic regression's accuracy and the NMI of its predictions, cross-validated (5 folds; a
    group's rows never on both sides). On PCA's input it is the supervised ceiling, a yardstick
    for the NMI targets; on a representation it says what that representation holds, so that a
    low KMeans NMI can be told apart from a representation that lacks the label."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import normalized_mutual_info_score
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    keep = np.array([bool(t["genre"]) for t in tracks])
    x, groups = x[keep], np.array(groups)[keep]
    y = np.array([t["genre"] for t in tracks], dtype=object)[keep].astype(str)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
    folds = GroupKFold(5, shuffle=True, random_state=0).split(x, y, groups)
    predicted = cross_val_predict(classifier, x, y, cv=list(folds))
    return {
        "accuracy": float(np.mean(predicted == y)),
        "nmi": float(normalized_mutual_info_score(y, predicted)),
    }


def probe_table(reps: dict, tracks: list[dict], groups: list[str], ceiling: dict) -> dict:
    """The linear probe of every representation, the mean over its seeds; printed with the
    supervised ceiling under them."""
    probes = {}
    for name, runs in reps.items():
        each = [
            linear_probe(x, tracks, groups) for x in (runs if isinstance(runs, list) else [runs])
        ]
        probes[name] = {k: float(np.mean([p[k] for p in each])) for k in ("accuracy", "nmi")}
    print(
        "\nlinear probe: a logistic regression told the labels, 5-fold CV, NMI of its predictions"
    )
    for name, p in {**probes, "supervised ceiling (PCA's input)": ceiling}.items():
        print(f"  {name:34s} accuracy {p['accuracy']:.3f}  NMI {p['nmi']:.3f}")
    return probes


def seed_table(reps: dict, tracks: list[dict], seeds: list[int]) -> dict:
    """Per representation, the ARI between its seeds' KMeans clusterings ("fresh": 1 = the same
    clusters) and that of the other seeds' anchored to the first's, as the recluster does
    ("anchored"); printed."""
    k = len({t["genre"] for t in tracks if t["genre"]})
    table = {
        name: {
            "fresh": evaluation.seed_agreement(rep, k, seeds),
            "anchored": evaluation.anchored_agreement(rep, k, seeds),
        }
        for name, rep in reps.items()
    }
    print(f"\nARI between the {len(seeds)} seeds' KMeans clusterings (1 = the same clusters)")
    print(f"  {'':34s} {'fresh':>7s} {'anchored':>9s}")
    for name, value in table.items():
        print(f"  {name:34s} {value['fresh']:7.3f} {value['anchored']:9.3f}")
    return table


def score(name: str, tracks: list[dict], reps: dict, seeds: list[int], label: str) -> list:
    labels = {label: [t["genre"] for t in tracks]}
    k = {label: len({t["genre"] for t in tracks if t["genre"]})}
    results = evaluation.evaluate(reps, labels, k, seeds)
    print(f"\n{name}\n" + evaluation.format_table(results, label))
    return evaluation.to_json(results)


def run_dataset(stack, name, landing, args) -> dict:
    settings, snapshot = catalogue(stack, name, landing)
    tracks = load_snapshot(ObjectStore(settings), snapshot)
    base = baselines(settings, snapshot)
    k = len({t["genre"] for t in tracks if t["genre"]})
    vae_mel, mel_rate = ours(settings, snapshot, "mel", args.epochs, args.seeds, k)
    vae_musicnn, musicnn_rate = ours(
        settings, snapshot, "musicnn", args.musicnn_epochs, args.seeds, k
    )
    res, res_rate = research_runs(landing, settings, snapshot, args.epochs, args.seeds)
    reps = {
        "spectral": base["spectral"],
        "PCA": [pca(base["both"], 32, s) for s in args.seeds],
        "musicnn pooled": standardise(base["frontend"]),
        "musicnn pooled + PCA": [pca(base["frontend+lyrics"], 32, s) for s in args.seeds],
        "research VAE": res,
        "hybrid VAE (mel)": vae_mel,
        "hybrid VAE (musicnn)": vae_musicnn,
    }
    label = "genre" if name == "sample" else "collection"
    result = {
        "tracks": len(tracks),
        "samples_per_s": {"mel": mel_rate, "musicnn": musicnn_rate, "research": res_rate},
        "results": score(f"{name}: all {len(tracks)} clips", tracks, reps, args.seeds, label),
        "seed_ari": seed_table(reps, tracks, args.seeds),
    }
    # A real-audio track's windows stay on one side of every fold, as they would for a new track.
    groups = [
        t["track_id"].rsplit("-", 1)[0] if name == "realaudio" else t["track_id"] for t in tracks
    ]
    result["supervised_ceiling"] = linear_probe(base["both"], tracks, groups)
    result["linear_probe"] = probe_table(reps, tracks, groups, result["supervised_ceiling"])
    if name == "realaudio":
        # One window per track, so that a track's windows cannot vouch for each other.
        first = [i for i, t in enumerate(tracks) if t["track_id"].endswith("-01")]
        sub = {
            k: ([a[first] for a in v] if isinstance(v, list) else v[first]) for k, v in reps.items()
        }
        first_tracks = [tracks[i] for i in first]
        result["one_window_per_track"] = score(
            f"{name}: one window per track ({len(first)} tracks)",
            first_tracks,
            sub,
            args.seeds,
            label,
        )
        result["one_window_per_track_seed_ari"] = seed_table(sub, first_tracks, args.seeds)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracks", type=int, default=2000)
    # The research model (80M parameters, ~19 samples/s on 2 cores) bounds what fits in ~45 min.
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--musicnn-epochs", type=int, default=EPOCHS["musicnn"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--no-realaudio", action="store_true")
    p.add_argument("--no-sample", action="store_true", help="score the real-audio set only")
    p.add_argument("--out", type=Path, default=RESULTS / "model.json")
    args = p.parse_args()
    args.seeds = list(range(args.seeds))
    log_to_console()
    started = time.monotonic()

    from benchmarks.realaudio import build_realaudio
    from musicvae.local.sample.layout import build_sample

    stack = Stack(CACHE / "stack")
    stack.up(airflow=False)
    try:
        report = {}
        if not args.no_sample:
            sample = CACHE / f"sample-{args.tracks}"
            build_sample(sample, tracks=args.tracks, seed=0)
            report["sample"] = run_dataset(stack, "sample", sample, args)
        if not args.no_realaudio:
            real = CACHE / "realaudio-set"
            build_realaudio(real, CACHE / "realaudio")
            report["realaudio"] = run_dataset(stack, "realaudio", real, args)
    finally:
        stack.down()
    report["config"] = {
        "tracks": args.tracks,
        "epochs": args.epochs,
        "musicnn_epochs": args.musicnn_epochs,
        "seeds": args.seeds,
        "research_batch": research.RESEARCH_BATCH_SIZE,
        "ours_batch": RetrainParams().batch_size,
        "musicnn": MusicnnFrontend().to_dict(),
    }
    report["machine"] = {
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    report["seconds"] = round(time.monotonic() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out} ({report['seconds']} s)")


if __name__ == "__main__":
    main()
