"""musicvae_retrain after its snapshot (`registry.snapshots`): cache features, train the
beta-VAE, register it.

Each step is one function the DAG calls with ids; data moves through object storage. Retraining
the same snapshot with the same parameters and code finds the registered version and stops.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import asdict, dataclass

import numpy as np

from musicvae.core import db, lineage
from musicvae.core.code_version import code_version
from musicvae.core.config import Settings
from musicvae.core.shards import inputs, split
from musicvae.core.storage import ObjectStore
from musicvae.model import frontends
from musicvae.model.clustering import agreement, kmeans
from musicvae.model.features import LyricsVectorizer
from musicvae.model.featurestore import ensure_features
from musicvae.model.inputs import lyrics_texts, training_data
from musicvae.registry import versions
from musicvae.registry.snapshots import load_snapshot, snapshot_key

log = logging.getLogger("musicvae.retrain.steps")


@dataclass(frozen=True)
class RetrainParams:
    """What a user sets in the trigger form (the DAG's Params mirror these defaults)."""

    epochs: int | None = None  # None: the front end's own (`frontends.EPOCHS`)
    beta: float = 1.0
    latent_dim: int = 32
    learning_rate: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    n_clusters: int = 8
    vocab_size: int = 512
    audio_frontend: str = frontends.DEFAULT

    def __post_init__(self):
        frontends.frontend(self.audio_frontend)  # a clear error for a name that is not one
        if self.epochs is None:  # resolved here, so that the digest and the record say it
            object.__setattr__(self, "epochs", frontends.EPOCHS[self.audio_frontend])

    @classmethod
    def from_dict(cls, values: dict) -> RetrainParams:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        defaults = cls()  # epochs resolved: every default's type is the field's
        return cls(
            **{k: None if v is None else type(getattr(defaults, k))(v) for k, v in known.items()}
        )

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def train_config(self):
        from musicvae.model.trained import TrainConfig

        return TrainConfig(
            epochs=self.epochs,
            beta=self.beta,
            latent_dim=self.latent_dim,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            seed=self.seed,
            # A pretrained front end's model is tuned towards the clusters the recluster makes.
            clusters=self.n_clusters if frontends.frontend(self.audio_frontend).patches else 0,
        )


# -- features ---------------------------------------------------------------------------------


def feature_shards(settings: Settings, snapshot_id: str, size: int) -> list[dict]:
    """The snapshot's audio in shards of `size` tracks, written beside the snapshot, so that a
    features task reads its own shard, not the whole snapshot. The snapshot is frozen, so its
    shards are too: a rerun writes the same ones."""
    store = ObjectStore(settings)
    audio = [
        [t["audio_key"], t["audio_sha256"]]
        for t in load_snapshot(store, snapshot_id)
        if t["audio_key"]
    ]
    prefix = f"{snapshot_key(snapshot_id).removesuffix('.json')}.shards-{size}"
    shards = split(store, prefix, audio, size, snapshot_id=snapshot_id)
    lineage.read(lineage.objects(settings, snapshot_key(snapshot_id)))
    lineage.wrote(lineage.objects(settings, prefix))
    return shards


def prepare_features(
    settings: Settings,
    snapshot_id: str,
    audio_frontend: str = frontends.DEFAULT,
    shard: dict | None = None,
) -> dict:
    """Cache the front end's features of the snapshot's tracks: one of its `feature_shards`, or
    all of them."""
    store = ObjectStore(settings)
    if shard is None:
        tracks = load_snapshot(store, snapshot_id)
        audio = [(t["audio_key"], t["audio_sha256"]) for t in tracks if t["audio_key"]]
    else:
        audio = [tuple(pair) for pair in inputs(store, shard)]
    frontend = frontends.frontend(audio_frontend)
    computed = ensure_features(store, audio, frontend)
    lineage.read(
        lineage.objects(settings, snapshot_key(snapshot_id)), lineage.objects(settings, "raw")
    )
    lineage.wrote(lineage.objects(settings, f"features/{frontend.key()}"))
    lineage.facts(snapshot_id=snapshot_id)
    log.info(
        "%s features for snapshot %s%s: %d computed, %d cached",
        audio_frontend,
        snapshot_id,
        "" if shard is None else f", shard {shard['index']}",
        computed,
        len(audio) - computed,
    )
    return {"computed": computed, "cached": len(audio) - computed}


# -- training and registration ----------------------------------------------------------------


def candidate_prefix(snapshot_id: str, params: RetrainParams) -> str:
    return f"models/{snapshot_id}-{params.digest()}-{code_version()}"


def train(settings: Settings, snapshot_id: str, params: RetrainParams) -> dict | None:
    """Train on the snapshot and store the artifacts; None when this model is already registered."""
    from musicvae.model.train import fit, split_rows

    eng = db.engine(settings.database_url)
    with eng.connect() as conn:
        existing = versions.find(conn, snapshot_id, params.digest())
    if existing is not None:
        log.info(
            "model version %s already trained on snapshot %s with these parameters",
            existing,
            snapshot_id,
        )
        return None
    store = ObjectStore(settings)
    tracks = load_snapshot(store, snapshot_id)
    config = params.train_config()
    train_rows, val_rows = split_rows(len(tracks), config.val_fraction, config.seed)
    texts = lyrics_texts(store, tracks)
    # The vocabulary, like the mel normalisation inside fit(), sees the training rows only.
    vectorizer = LyricsVectorizer(vocab_size=params.vocab_size).fit([texts[i] for i in train_rows])
    frontend = frontends.frontend(params.audio_frontend)
    data = training_data(store, tracks, frontend, vectorizer)
    prefix = candidate_prefix(snapshot_id, params)
    trained = fit(data, config, **checkpointing(store, f"{prefix}/checkpoint.pt"))
    metrics = evaluate(trained.embed(data), tracks, params)
    metrics.update(
        best_val_loss=round(float(trained.best_val_loss), 5),
        epochs_run=len(trained.history),
        samples_per_s=round(float(np.mean([h["samples_per_s"] for h in trained.history])), 1),
    )
    versions.save_artifacts(
        store,
        prefix,
        trained,
        vectorizer,
        {
            "snapshot_id": snapshot_id,
            "params": asdict(params),
            "frontend": frontend.to_dict(),
            "code_version": code_version(),
            "metrics": metrics,
            "history": trained.history,
            "validation_tracks": [tracks[i]["track_id"] for i in val_rows],
        },
    )
    store.remove(f"{prefix}/checkpoint.pt")
    log.info("trained on %d tracks: %s", len(tracks), metrics)
    lineage.read(
        lineage.objects(settings, snapshot_key(snapshot_id)),
        lineage.objects(settings, f"features/{frontend.key()}"),
        lineage.objects(settings, "raw"),
    )
    lineage.wrote(lineage.objects(settings, prefix))
    lineage.facts(snapshot_id=snapshot_id)
    return {
        "snapshot_id": snapshot_id,
        "n_tracks": len(tracks),
        "artifact_prefix": prefix,
        "metrics": metrics,
        "params": asdict(params),
    }


def checkpointing(store: ObjectStore, key: str) -> dict:
    """fit() keyword arguments that save a checkpoint every epoch and resume from the last one.

    A training task killed mid-run (worker lost, OOM, preemption) is retried by Airflow; the
    retry finds the checkpoint under the same content-derived key and continues from there.
    """
    import torch

    def save(epoch: int, checkpoint: dict) -> None:
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        store.put_bytes(key, buf.getvalue())

    resume = None
    if store.exists(key):
        resume = torch.load(
            io.BytesIO(store.get_bytes(key)), map_location="cpu", weights_only=False
        )
        log.info("found checkpoint %s: resuming training", key)
    return {"on_epoch": save, "resume": resume}


def evaluate(embeddings: np.ndarray, tracks: list[dict], params: RetrainParams) -> dict:
    """How well KMeans on the latent means recovers genres and quadrants (as the research did)."""
    labels = kmeans(embeddings, params.n_clusters, params.seed).labels
    genre = agreement([t["genre"] for t in tracks], labels)
    quadrant = agreement([t["quadrant"] for t in tracks], labels)
    return {
        **{f"genre_{k}": v for k, v in genre.items()},
        **{f"quadrant_{k}": v for k, v in quadrant.items()},
    }


def register(settings: Settings, candidate: dict, dag_run_id: str) -> int:
    params = RetrainParams.from_dict(candidate["params"])
    with db.engine(settings.database_url).begin() as conn:
        version = versions.register(
            conn,
            snapshot_id=candidate["snapshot_id"],
            n_tracks=candidate["n_tracks"],
            params=candidate["params"],
            params_hash=params.digest(),
            artifact_prefix=candidate["artifact_prefix"],
            metrics=candidate["metrics"],
            dag_run_id=dag_run_id,
        )
    log.info("registered model version %d (%s)", version, candidate["artifact_prefix"])
    lineage.read(lineage.objects(settings, candidate["artifact_prefix"]))
    lineage.wrote(lineage.table(settings, "model_versions"))
    lineage.facts(model_version=version, snapshot_id=candidate["snapshot_id"])
    return version
