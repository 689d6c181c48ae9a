"""Model versions: artifacts in object storage, one `model_versions` row each."""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import dataclass

import sqlalchemy as sa

from musicvae.core.code_version import code_version
from musicvae.core.errors import ModelNotFoundError
from musicvae.core.storage import ObjectStore
from musicvae.model import frontends
from musicvae.model.features import LyricsVectorizer

# Where pickled classes live now: versions saved before musicvae/ became subpackages name the
# module their vectorizer's class was in then.
MOVED_MODULES = {"musicvae.features": "musicvae.model.features"}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        return super().find_class(MOVED_MODULES.get(module, module), name)


@dataclass
class ModelVersion:
    version: int
    snapshot_id: str
    params: dict
    artifact_prefix: str
    metrics: dict
    code_version: str


@dataclass
class LoadedModel:
    version: ModelVersion
    model: object  # musicvae.model.trained.TrainedModel
    vectorizer: LyricsVectorizer
    frontend: frontends.Frontend


def save_artifacts(
    store: ObjectStore, prefix: str, trained, vectorizer: LyricsVectorizer, config: dict
) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(trained.state(), buf)
    store.put_bytes(f"{prefix}/model.pt", buf.getvalue())
    store.put_bytes(f"{prefix}/vectorizer.pkl", pickle.dumps(vectorizer))
    store.put_json(f"{prefix}/config.json", config)


def find(conn, snapshot_id: str, params_hash: str) -> int | None:
    return conn.execute(
        sa.text(
            "SELECT version FROM model_versions WHERE snapshot_id = :s AND params_hash = :p "
            "AND code_version = :c"
        ),
        {"s": snapshot_id, "p": params_hash, "c": code_version()},
    ).scalar()


def register(
    conn,
    *,
    snapshot_id: str,
    n_tracks: int,
    params: dict,
    params_hash: str,
    artifact_prefix: str,
    metrics: dict,
    dag_run_id: str,
) -> int:
    return conn.execute(
        sa.text(
            "INSERT INTO model_versions (snapshot_id, n_tracks, params, params_hash, code_version, "
            "artifact_prefix, metrics, dag_run_id) VALUES (:s, :n, CAST(:p AS jsonb), :h, :c, :a, "
            "CAST(:m AS jsonb), :r) ON CONFLICT (snapshot_id, params_hash, code_version) "
            "DO UPDATE SET metrics = EXCLUDED.metrics RETURNING version"
        ),
        {
            "s": snapshot_id,
            "n": n_tracks,
            "p": json.dumps(params),
            "h": params_hash,
            "c": code_version(),
            "a": artifact_prefix,
            "m": json.dumps(metrics),
            "r": dag_run_id,
        },
    ).scalar_one()


CHAMPION = "champion"


def champion(conn, required: bool = True) -> ModelVersion | None:
    """The model version the catalogue is clustered with."""
    version = conn.execute(
        sa.text("SELECT version FROM model_aliases WHERE alias = :a"), {"a": CHAMPION}
    ).scalar()
    if version is None:
        if required:
            raise ModelNotFoundError(
                "no champion model yet: trigger musicvae_retrain; its first model becomes champion"
            )
        return None
    return get(conn, version)


def record_promotion(conn, version: int, decision: dict) -> None:
    """Store the decision on the version; move the champion alias when it was promoted."""
    conn.execute(
        sa.text("UPDATE model_versions SET promotion = CAST(:d AS jsonb) WHERE version = :v"),
        {"d": json.dumps(decision), "v": version},
    )
    if decision["promoted"]:
        conn.execute(
            sa.text(
                "INSERT INTO model_aliases (alias, version, reason) VALUES (:a, :v, :r) "
                "ON CONFLICT (alias) DO UPDATE SET version = EXCLUDED.version, "
                "reason = EXCLUDED.reason, updated_at = now()"
            ),
            {"a": CHAMPION, "v": version, "r": decision["reason"]},
        )


def get(conn, version: int) -> ModelVersion:
    row = conn.execute(
        sa.text(
            "SELECT version, snapshot_id, params, artifact_prefix, metrics, code_version "
            "FROM model_versions WHERE version = :v"
        ),
        {"v": version},
    ).first()
    if row is None:
        raise ModelNotFoundError(f"model version {version} does not exist")
    return ModelVersion(*row)


def load(store: ObjectStore, mv: ModelVersion) -> LoadedModel:
    import torch

    from musicvae.model.trained import TrainedModel

    state = torch.load(
        io.BytesIO(store.get_bytes(f"{mv.artifact_prefix}/model.pt")),
        map_location="cpu",
        weights_only=False,
    )
    # The vectorizer was written by this pipeline's own retrain task, never by a user.
    vectorizer = _Unpickler(
        io.BytesIO(store.get_bytes(f"{mv.artifact_prefix}/vectorizer.pkl"))
    ).load()
    config = store.get_json(f"{mv.artifact_prefix}/config.json")
    # Versions saved before front ends were selectable stored their MelConfig as "mel".
    frontend = frontends.from_dict(config["frontend"] if "frontend" in config else config["mel"])
    return LoadedModel(mv, TrainedModel.from_state(state), vectorizer, frontend)
