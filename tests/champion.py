"""A catalogue with a champion, made in this process: ingest, validate, snapshot, mel features,
a two-epoch model, promoted. For tests of what comes after a retrain."""

from musicvae.ingest.run import run_ingest
from musicvae.quality.validate import run_validation
from musicvae.registry.snapshots import take_snapshot
from musicvae.retrain.promotion import decide
from musicvae.retrain.steps import RetrainParams, prepare_features, register, train


def train_champion(settings, landing, n_clusters: int) -> int:
    run_ingest(settings, "ingest", str(landing))
    run_validation(settings, "validate")
    snapshot = take_snapshot(settings)["snapshot_id"]
    prepare_features(settings, snapshot, "mel")
    params = RetrainParams(epochs=2, n_clusters=n_clusters, vocab_size=64, audio_frontend="mel")
    version = register(settings, train(settings, snapshot, params), "retrain")
    assert decide(settings, version, margin=0.01)["promoted"]
    return version
