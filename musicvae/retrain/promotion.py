"""Whether a new model version replaces the champion.

Both models embed the same held-back tracks (the candidate's validation split, which it never
trained on) with their own features, and are scored by how well KMeans on those embeddings
recovers the genre labels. A loss would not do: two versions may differ in vocabulary,
normalisation or latent size, so their losses are not on one scale.
"""

from __future__ import annotations

import logging

import numpy as np

from musicvae.core import db, lineage
from musicvae.core.config import Settings
from musicvae.core.storage import ObjectStore
from musicvae.model.clustering import agreement, kmeans
from musicvae.registry import versions
from musicvae.registry.embedding import embed_tracks
from musicvae.registry.snapshots import load_snapshot

log = logging.getLogger("musicvae.retrain.promotion")

SEEDS = (0, 1, 2)


def held_out_score(
    store: ObjectStore, mv: versions.ModelVersion, tracks: list[dict], truth: list[str | None]
) -> float:
    """Mean NMI (over seeds) of KMeans on the model's embeddings against the reference labels."""
    embeddings = embed_tracks(store, versions.load(store, mv), tracks)
    k = max(2, min(len({t for t in truth if t}), len(tracks) // 2))
    return float(
        np.mean([agreement(truth, kmeans(embeddings, k, seed).labels)["nmi"] for seed in SEEDS])
    )


def reference_labels(tracks: list[dict]) -> tuple[str, list[str | None]]:
    """Genres where the tracks have them (MERGE always does); quadrants otherwise."""
    genres = [t["genre"] for t in tracks]
    if len({g for g in genres if g}) >= 2:
        return "genre", genres
    return "quadrant", [t["quadrant"] for t in tracks]


def decide(settings: Settings, version: int, margin: float) -> dict:
    """The automatic gate's decision, recorded (and the champion alias moved when it passes)."""
    return record(settings, version, judge(settings, version, margin))


def judge(settings: Settings, version: int, margin: float) -> dict:
    """Whether the version passes the automatic gate; nothing is written."""
    store = ObjectStore(settings)
    with db.engine(settings.database_url).connect() as conn:
        candidate = versions.get(conn, version)
        champion = versions.champion(conn, required=False)
    lineage.read(*lineage.tables(settings, "model_versions", "model_aliases"))
    lineage.facts(model_version=version, snapshot_id=candidate.snapshot_id)
    if champion is None or champion.version == version:
        return {
            "promoted": True,
            "champion_before": None,
            "margin": margin,
            "reason": "first model version: there is no champion to beat",
        }
    return _compare(store, candidate, champion, margin)


def record(settings: Settings, version: int, decision: dict) -> dict:
    with db.engine(settings.database_url).begin() as conn:
        versions.record_promotion(conn, version, decision)
    lineage.wrote(*lineage.tables(settings, "model_versions", "model_aliases"))
    lineage.facts(model_version=version)
    log.info("model version %d: %s", version, decision["reason"])
    return decision


def with_review(decision: dict, review: dict) -> dict:
    """The gate's decision after a person's review (the approval task's result): approved, it
    stands; rejected or unanswered in time, the champion stays. No review asked: unchanged."""
    if not review.get("asked"):
        return decision
    user = review.get("responded_by_user")
    approved = review["chosen_options"] == ["Approve"]
    approval = {
        "approved": approved,
        "by": user["name"] if user else None,
        "at": review.get("responded_at"),
        "reason": (review.get("params_input") or {}).get("reason") or None,
    }
    if approved:
        reason = f"{decision['reason']}; approved by {approval['by']}"
    elif user is None:
        reason = f"kept the champion: no approval within {review['timeout_hours']:g} h"
    else:
        why = f": {approval['reason']}" if approval["reason"] else ""
        reason = f"kept the champion: rejected by {approval['by']}{why}"
    return {**decision, "promoted": approved, "approval": approval, "reason": reason}


def _compare(
    store: ObjectStore,
    candidate: versions.ModelVersion,
    champion: versions.ModelVersion,
    margin: float,
) -> dict:
    config = store.get_json(f"{candidate.artifact_prefix}/config.json")
    held_out = set(config["validation_tracks"])
    tracks = [t for t in load_snapshot(store, candidate.snapshot_id) if t["track_id"] in held_out]
    label_set, truth = reference_labels(tracks)
    scores = {
        name: round(held_out_score(store, mv, tracks, truth), 4)
        for name, mv in (("candidate", candidate), ("champion", champion))
    }
    promoted = scores["candidate"] >= scores["champion"] - margin
    verdict = "promoted" if promoted else "kept the champion"
    reason = (
        f"{verdict}: {label_set} NMI on {len(tracks)} held-back tracks "
        f"{scores['candidate']:.4f} (v{candidate.version}) vs {scores['champion']:.4f} "
        f"(champion v{champion.version}), margin {margin:g}"
    )
    return {
        "promoted": promoted,
        "champion_before": champion.version,
        "margin": margin,
        "label_set": label_set,
        "held_out_tracks": len(tracks),
        "scores": scores,
        "reason": reason,
    }
