"""Retrains the hybrid beta-VAE on a snapshot of the valid catalogue; promotes it if not worse."""

from airflow.sdk import Param, dag, task

from musicvae.assets import DEFAULT_ARGS, MODEL_CHAMPION, cron, settings
from musicvae.queues import TRAINING_POOL, TRAINING_QUEUE


@dag(
    schedule=cron("@weekly"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["musicvae", "training"],
    params={
        "audio_frontend": Param(
            "musicnn",
            type="string",
            enum=["musicnn", "mel"],
            description="What the audio expert hears: musicnn, a network pretrained on the "
            "Million Song Dataset (best on real music), or mel, log-mel images learnt from "
            "scratch.",
        ),
        "epochs": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=500,
            description="Training epochs (early stopping may end sooner). Empty: the front "
            "end's default, 100 for musicnn and 20 for mel.",
        ),
        "beta": Param(
            1.0,
            type="number",
            minimum=0.0,
            maximum=20.0,
            description="Weight of the KL term (beta-VAE).",
        ),
        "latent_dim": Param(
            32,
            type="integer",
            minimum=2,
            maximum=256,
            description="Size of the latent space (embedding dimension).",
        ),
        "learning_rate": Param(
            1e-3,
            type="number",
            exclusiveMinimum=0.0,
            maximum=0.1,
            description="Adam learning rate.",
        ),
        "batch_size": Param(
            32, type="integer", minimum=2, maximum=1024, description="Tracks per training step."
        ),
        "seed": Param(0, type="integer", minimum=0, description="Random seed."),
        "n_clusters": Param(
            8,
            type="integer",
            minimum=2,
            maximum=200,
            description="Number of KMeans clusters for the catalogue.",
        ),
        "promotion_margin": Param(
            0.01,
            type="number",
            minimum=0.0,
            maximum=1.0,
            description="The new model replaces the champion unless its held-out genre NMI is "
            "lower than the champion's by more than this.",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            description="Snapshot the valid tracks, check the parameters and compute features, "
            "but train nothing.",
        ),
        "vocab_size": Param(
            512,
            type="integer",
            minimum=16,
            maximum=20000,
            description="Lyrics TF-IDF vocabulary size.",
        ),
    },
)
def musicvae_retrain():
    @task
    def snapshot(dag_run=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from musicvae.retrain import NotEnoughDataError, take_snapshot

        try:
            return take_snapshot(settings())
        except NotEnoughDataError as e:
            # Unpausing starts last week's slot at once; on an empty catalogue that is no error.
            if dag_run.run_type == "scheduled":
                raise AirflowSkipException(str(e)) from e
            raise

    # The pretrained front end is a network too: it runs where the GPU is.
    @task(queue=TRAINING_QUEUE)
    def features(snap: dict, params=None) -> dict:
        from musicvae.retrain import prepare_features

        return prepare_features(settings(), snap["snapshot_id"], params["audio_frontend"])

    @task(queue=TRAINING_QUEUE, pool=TRAINING_POOL)
    def train(snap: dict, _features: dict, params=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from musicvae.retrain import RetrainParams
        from musicvae.retrain import train as train_model

        config = RetrainParams.from_dict(params)
        if params["dry_run"]:
            raise AirflowSkipException(
                f"dry run: snapshot {snap['snapshot_id']} ({snap['n_tracks']} valid tracks) and "
                f"features are ready; parameters {config} are valid; nothing trained"
            )
        candidate = train_model(settings(), snap["snapshot_id"], config)
        if candidate is None:
            raise AirflowSkipException("this snapshot and these parameters are already registered")
        return candidate

    @task
    def register(candidate: dict, run_id=None) -> int:
        from musicvae.retrain import register as register_model

        return register_model(settings(), candidate, run_id)

    @task
    def evaluate(version: int) -> int:
        from musicvae.model_report import report

        summary = report(settings(), version)
        print(f"evaluation report: /musicvae/models/{version}/ ({summary['evaluation_prefix']})")
        return version

    @task(outlets=[MODEL_CHAMPION])
    def promote(version: int, params=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from musicvae.promotion import decide

        decision = decide(settings(), version, params["promotion_margin"])
        if not decision["promoted"]:
            # No asset event: the catalogue stays clustered with the champion.
            raise AirflowSkipException(decision["reason"])
        return decision

    snap = snapshot()
    promote(evaluate(register(train(snap, features(snap)))))


musicvae_retrain()
