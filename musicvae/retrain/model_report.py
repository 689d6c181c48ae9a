"""The evaluation report of a model version: the research table recomputed, plus plots.

On the version's own snapshot, in one harness: direct spectral features, PCA and a plain
autoencoder (each + KMeans) against the hybrid beta-VAE (+ KMeans, agglomerative, GMM,
HDBSCAN), scored against genres and quadrants over several seeds. Everything is stored under
the version's artifact prefix (`evaluation/`) and summarised in `model_versions.metrics`.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from musicvae.core import db, lineage
from musicvae.core.config import Settings, evaluation_sample
from musicvae.core.storage import ObjectStore
from musicvae.model import baselines, evaluation, frontends, plots
from musicvae.model.clustering import uniform_rows
from musicvae.model.inputs import training_data
from musicvae.model.latent_drift import embedding_drift
from musicvae.registry import versions
from musicvae.registry.embedding import embed_tracks
from musicvae.registry.snapshots import load_snapshot
from musicvae.registry.versions import LoadedModel

log = logging.getLogger("musicvae.retrain.model_report")

SEEDS = (0, 1, 2)
VAE = "hybrid VAE"


def representations(loaded: LoadedModel, data, seeds=SEEDS) -> dict:
    """The rows of the research table: baselines on the same features, and our embeddings.

    With log-mel input the baselines start from its spectral statistics; with a pretrained
    front end, from the pooled features the VAE itself is given ("front end")."""
    if data.patches:
        name, audio = "front end", frontends.pooled(data.audio)
    else:
        name, audio = "spectral", baselines.spectral_features(data.audio)
    both = np.hstack([audio, data.lyrics])
    latent = loaded.model.config.latent_dim
    return {
        name: audio,
        "PCA": [baselines.pca(both, latent, s) for s in seeds],
        "plain AE": [baselines.plain_autoencoder(both, latent, s) for s in seeds],
        VAE: loaded.model.embed(data),
    }


def label_sets(tracks: list[dict]) -> tuple[dict, dict]:
    labels = {"genre": [t["genre"] for t in tracks], "quadrant": [t["quadrant"] for t in tracks]}
    # As the research code did: as many clusters as there are classes.
    k = {name: max(2, len({v for v in values if v})) for name, values in labels.items()}
    return labels, k


def sample(tracks: list[dict], size: int) -> list[dict]:
    """At most `size` of the tracks, drawn uniformly with a fixed seed and kept in snapshot
    order, so that every version of one snapshot is judged on the same tracks."""
    rows = uniform_rows(len(tracks), size, seed=0)
    return tracks if rows is None else [tracks[i] for i in rows]


def report(settings: Settings, version: int, seeds=SEEDS) -> dict:
    store = ObjectStore(settings)
    eng = db.engine(settings.database_url)
    db.migrate(eng)
    with eng.connect() as conn:
        mv = versions.get(conn, version)
    loaded = versions.load(store, mv)
    snapshot = load_snapshot(store, mv.snapshot_id)
    tracks = sample(snapshot, evaluation_sample())
    if len(tracks) < len(snapshot):
        log.info(
            "evaluating model version %d on a uniform sample of %d of its snapshot's %d tracks",
            version,
            len(tracks),
            len(snapshot),
        )
    data = training_data(store, tracks, loaded.frontend, loaded.vectorizer)
    reps = representations(loaded, data, seeds)
    labels, k = label_sets(tracks)
    methods = {VAE: list(evaluation.METHODS)}
    results = evaluation.evaluate(reps, labels, k, seeds, methods)

    prefix = f"{mv.artifact_prefix}/evaluation"
    files = _plots(loaded, data, reps[VAE], labels, k, results, mv, store)
    for name, content in files.items():
        store.put_bytes(f"{prefix}/{name}", content, "image/png")
    tables = {name: evaluation.format_table(results, name) for name in labels}
    store.put_json(f"{prefix}/results.json", evaluation.to_json(results))
    heading = f"on {len(tracks)} of the snapshot's {len(snapshot)} tracks\n\n"
    text = heading + "\n\n".join(tables.values())
    store.put_bytes(f"{prefix}/results.txt", text.encode(), "text/plain")
    summary = _summary(results)
    metrics = {"evaluation": summary, "evaluation_tracks": len(tracks)}
    drift = _drift(store, eng, mv, tracks, reps[VAE])
    if drift:
        metrics["drift"] = drift
        log.info("model version %d against the champion: %s", version, drift)
    with eng.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE model_versions SET evaluation_prefix = :p, "
                "metrics = metrics || CAST(:m AS jsonb) WHERE version = :v"
            ),
            {"p": prefix, "m": json.dumps(metrics), "v": version},
        )
    for table in tables.values():
        log.info("model version %d:\n%s", version, table)
    lineage.read(lineage.objects(settings, mv.artifact_prefix))
    lineage.wrote(lineage.objects(settings, prefix), lineage.table(settings, "model_versions"))
    lineage.facts(model_version=version, snapshot_id=mv.snapshot_id)
    return {
        "version": version,
        "evaluation_prefix": prefix,
        "plots": sorted(files),
        "summary": summary,
        "drift": drift,
    }


def _drift(store, eng, mv, tracks: list[dict], embeddings: np.ndarray) -> dict | None:
    """How far this version's latent space is from the champion's, on this version's snapshot;
    None while this version is the first or is the champion itself."""
    with eng.connect() as conn:
        champion = versions.champion(conn, required=False)
    if champion is None or champion.version == mv.version:
        return None
    previous = embed_tracks(store, versions.load(store, champion), tracks)
    return embedding_drift(embeddings, previous, champion.version)


def _summary(results: list[evaluation.Result]) -> dict:
    """The headline figures: every representation + KMeans, NMI/ARI/purity, mean over seeds."""
    return {
        f"{r.labels}/{r.representation}/{r.method}/{r.metric}": round(r.mean, 4)
        for r in results
        if r.method == "kmeans" and r.metric in ("nmi", "ari", "purity") and np.isfinite(r.mean)
    }


def _plots(loaded, data, embeddings, labels, k, results, mv, store) -> dict[str, bytes]:
    genres = labels["genre"]
    with_audio = np.flatnonzero(data.has_audio)[:4]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        paths = [
            plots.latent_map(
                embeddings,
                genres,
                out / "latent_map.png",
                title=f"Latent means of model v{mv.version} (t-SNE), top-10 genres",
            ),
            plots.contingency_heatmap(
                genres,
                evaluation.cluster(embeddings, "kmeans", k["genre"], 0),
                out / "contingency.png",
                title=f"Genres vs KMeans clusters, v{mv.version}",
            ),
            plots.results_table_image(results, out / "results_genre.png", labels="genre"),
            plots.results_table_image(results, out / "results_quadrant.png", labels="quadrant"),
            plots.training_curves(loaded.model.history, out / "training.png"),
        ]
        if len(with_audio):
            paths.append(_reconstructions(loaded, data, with_audio, out / "reconstructions.png"))
        return {p.name: p.read_bytes() for p in paths}


def _reconstructions(loaded, data, rows: np.ndarray, path: Path) -> Path:
    originals = data.audio[rows].astype(np.float32)
    recons = loaded.model.reconstruct(data, rows)
    if not data.patches:
        return plots.reconstructions(originals, recons, path)
    # Every patch's features (columns) beside the one reconstruction the track's latent gives.
    originals = originals.transpose(0, 2, 1)
    recons = np.repeat(recons[:, :, None], originals.shape[2], axis=2)
    names = ("3 s patch", "musicnn feature", "value", "Front-end features")
    return plots.reconstructions(originals, recons, path, axes_names=names)
