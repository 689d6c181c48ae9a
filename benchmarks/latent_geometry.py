"""What whitens our beta-VAE's latent on real audio, and what cluster tuning gives back: a study.

    python -m benchmarks.latent_geometry [--seeds 5] [--out benchmarks/results/latent_geometry.json]

On the dev real-audio set (`benchmarks.realaudio`, every window a track) it scores, with
KMeans (k = the number of collections, n_init=10), NMI against the collection and two
stabilities: "kmeans ARI", the mean ARI between KMeans seeds on ONE fixed representation, and
"seed ARI", the mean ARI between the clusterings of the representations each seed trained.

- the frozen front end's pooled patch features, standardised (the baseline);
- their first 16 principal components, as they are and whitened (each to unit variance);
- the clips' mean patches on the 16 directions of a within-clip LDA (`within_clip_lda`);
- the baseline with each row averaged with its 5, 10 or 20 nearest rows (`knn_smoothed`): a
  VAE trained to reconstruct a track's neighbours instead of the track would at best learn this;
- our VAE, once per seed: its embedding (the posterior means) before cluster tuning, the same
  standardised per dimension, as the embeddings of models trained before were, and the
  embedding after cluster tuning towards k clusters, as the retrain trains it.

The KL term pulls the aggregate posterior towards N(0, I): every active latent dimension ends
up with about unit variance, however much of the input it explains. That is a whitened space,
and the whitened PCA rows show what whitening does to KMeans on these features. The VAE trains
on the cached patch features directly, not through the stack, so the study takes minutes.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import time
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import normalized_mutual_info_score
from sklearn.neighbors import NearestNeighbors

from benchmarks.bench_features import log_to_console, machine_info
from benchmarks.realaudio import METADATA_NAME, SUBSET_FOLDER, build_realaudio
from musicvae.model.baselines import standardise
from musicvae.model.evaluation import cluster, seed_agreement
from musicvae.model.frontends import EPOCHS, MusicnnFrontend, pooled
from musicvae.model.train import fit
from musicvae.model.trained import TrainConfig, TrainingData

log = logging.getLogger("benchmarks.latent_geometry")
HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"


def patch_features(real: Path) -> tuple[np.ndarray, list[str]]:
    """[N, P, D] musicnn patch features of every window and its collection (the front end's
    default layer, as the retrain reads it), cached under a hash of the set's metadata."""
    metadata = (real / SUBSET_FOLDER / METADATA_NAME).read_bytes()
    cached = CACHE / f"latent-geometry-{hashlib.sha256(metadata).hexdigest()[:16]}.npz"
    if cached.exists():
        saved = np.load(cached)
        return saved["patches"], [str(label) for label in saved["labels"]]
    rows = list(csv.DictReader(io.StringIO(metadata.decode())))
    files = {p.stem: p for p in real.rglob("*.mp3")}
    frontend = MusicnnFrontend()
    started = time.monotonic()
    raw = frontend.extract(lambda r: files[r["Song"]].read_bytes(), rows, torch.device("cpu"), 2)
    log.info("musicnn features of %d windows in %.0f s", len(rows), time.monotonic() - started)
    patches = frontend.stack([frontend.row(r) for r in raw])
    labels = [r["Genres"] for r in rows]
    np.savez(cached, patches=patches, labels=np.array(labels))
    return patches, labels


def scores(rep: np.ndarray | list[np.ndarray], labels: list[str], k: int, seeds) -> dict:
    """NMI mean and sd over the seeds' KMeans clusterings of `rep` (one shared array, or one
    per seed), the mean ARI between those clusterings when each seed has its own array, and that
    of the KMeans seeds on one fixed array (the first seed's)."""
    arrays = rep if isinstance(rep, list) else [rep] * len(seeds)
    nmi = [
        normalized_mutual_info_score(labels, cluster(x, "kmeans", k, seed))
        for x, seed in zip(arrays, seeds, strict=True)
    ]
    return {
        "nmi_mean": float(np.mean(nmi)),
        "nmi_sd": float(np.std(nmi)),
        "seed_ari": seed_agreement(rep, k, seeds) if isinstance(rep, list) else None,
        "kmeans_ari": seed_agreement(arrays[0], k, seeds),
    }


def within_clip_lda(patches: np.ndarray, dim: int = 16, reg: float = 0.1) -> np.ndarray:
    """Each clip's mean patch projected on the `dim` directions along which clips differ most
    relative to how a clip's own patches vary (LDA with a clip's patches as its class), scaled
    by the square root of that ratio. Clip identity is the one label an unsupervised model
    gets for free: this is what a linear map learns from it.
    `reg` shrinks the within-clip covariance towards its mean variance (753 features, ~5000
    patches)."""
    x = patches.astype(np.float64)
    present = np.any(x != 0, axis=2)
    flat = x[present]
    x = np.where(present[..., None], (x - flat.mean(0)) / (flat.std(0) + 1e-6), 0.0)
    means = x.sum(axis=1) / present.sum(axis=1)[:, None]
    within = np.where(present[..., None], x - means[:, None], 0.0).reshape(-1, x.shape[-1])
    within = within.T @ within / present.sum()
    within += reg * np.trace(within) / len(within) * np.eye(len(within))
    ratio, directions = scipy.linalg.eigh(np.cov(means.T), within)
    top = np.argsort(ratio)[::-1][:dim]
    return means @ directions[:, top] * np.sqrt(np.maximum(ratio[top], 0.0))


def nearest(x: np.ndarray, neighbours: int) -> np.ndarray:
    """[N, neighbours]: each row's nearest other rows by cosine distance."""
    index = NearestNeighbors(n_neighbors=neighbours + 1, metric="cosine").fit(x)
    return index.kneighbors(x, return_distance=False)[:, 1:]


def knn_smoothed(x: np.ndarray, neighbours: int) -> np.ndarray:
    """Each row averaged with its `neighbours` nearest rows: what a model that learns to
    predict a track's neighbours from the track could at best add to a linear map."""
    return (x + x[nearest(x, neighbours)].sum(axis=1)) / (neighbours + 1)


def knn_agreement(x: np.ndarray, labels: list[str], neighbours: int) -> float:
    """The share of each row's `neighbours` nearest rows with its label."""
    labels = np.asarray(labels)
    return float(np.mean(labels[nearest(x, neighbours)] == labels[:, None]))


def vae_embeddings(patches: np.ndarray, seeds: list[int], clusters: int) -> list[np.ndarray]:
    """Per seed, the embedding of every window, cluster-tuned towards `clusters` (0: not)."""
    n = len(patches)
    no_lyrics = np.zeros((n, 1), np.float32)
    data = TrainingData(patches, np.ones(n, bool), no_lyrics, np.zeros(n, bool), patches=True)
    out = []
    for seed in seeds:
        started = time.monotonic()
        config = TrainConfig(epochs=EPOCHS["musicnn"], seed=seed, clusters=clusters)
        trained = fit(data, config)
        out.append(trained.embed(data).astype(np.float64))
        log.info(
            "VAE seed %d: %d epochs in %.0f s",
            seed,
            len(trained.history),
            time.monotonic() - started,
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--out", type=Path, default=HERE / "results" / "latent_geometry.json")
    args = p.parse_args()
    seeds = list(range(args.seeds))
    log_to_console()
    real = CACHE / "realaudio-set"
    build_realaudio(real, CACHE / "realaudio")
    patches, labels = patch_features(real)
    k = len(set(labels))
    frozen = standardise(pooled(patches)).astype(np.float64)
    vae = vae_embeddings(patches, seeds, clusters=0)
    tuned = vae_embeddings(patches, seeds, clusters=k)
    rows = {
        "musicnn pooled (frozen)": scores(frozen, labels, k, seeds),
        "  its PCA 16": scores(
            [PCA(16, random_state=s).fit_transform(frozen) for s in seeds], labels, k, seeds
        ),
        "  its PCA 16, whitened": scores(
            [PCA(16, whiten=True, random_state=s).fit_transform(frozen) for s in seeds],
            labels,
            k,
            seeds,
        ),
        "  within-clip LDA 16": scores(within_clip_lda(patches), labels, k, seeds),
        **{
            f"  averaged with its {n} nearest": scores(knn_smoothed(frozen, n), labels, k, seeds)
            for n in (5, 10, 20)
        },
        "VAE posterior means": scores(vae, labels, k, seeds),
        "  standardised per dimension": scores([standardise(z) for z in vae], labels, k, seeds),
        "  cluster-tuned (the retrain's)": scores(tuned, labels, k, seeds),
    }
    agreement = {n: knn_agreement(frozen, labels, n) for n in (5, 10, 20)}
    print(f"\n{len(labels)} windows, {k} collections, KMeans, {len(seeds)} seeds")
    print(
        "  nearest neighbours (frozen, cosine) of the same collection: "
        + ", ".join(f"{share:.2f} of {n}" for n, share in agreement.items())
    )
    print(f"  {'':34s} {'NMI':>15s} {'seed ARI':>9s} {'kmeans ARI':>11s}")
    for name, r in rows.items():
        seed_ari = "-" if r["seed_ari"] is None else f"{r['seed_ari']:.2f}"
        print(
            f"  {name:34s} {r['nmi_mean']:.3f} ± {r['nmi_sd']:.3f} {seed_ari:>9s}"
            f" {r['kmeans_ari']:11.2f}"
        )
    report = {
        "windows": len(labels),
        "collections": k,
        "seeds": seeds,
        "rows": rows,
        "knn_same_collection": agreement,
        "machine": machine_info(),
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
