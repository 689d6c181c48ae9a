"""Retrains the hybrid beta-VAE on a snapshot of the valid catalogue; promotes it if not worse
and, when the run asks for it, once a person has approved it in the UI."""

from airflow.sdk import Param, dag, task

from musicvae.assets import DEFAULT_ARGS, MODEL_CHAMPION, cron, fail_fast, settings
from musicvae.retrain.approval import ChampionApproval
from musicvae.retrain.form import trigger_form
from musicvae.retrain.queues import TRAINING_POOL, TRAINING_QUEUE


@dag(
    schedule=cron("@weekly"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["musicvae", "training"],
    # The trigger form: one Param per entry, with its JSON Schema (musicvae/retrain/form.py), and
    # a notice when the latest batch drifted from the champion's training data.
    params={name: Param(**spec) for name, spec in trigger_form().items()},
)
def musicvae_retrain():
    @task
    def snapshot(dag_run=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from musicvae.registry.snapshots import NotEnoughDataError, take_snapshot

        with fail_fast():
            try:
                return take_snapshot(settings())
            except NotEnoughDataError as e:
                # Unpausing starts last week's slot at once; on an empty catalogue, no error.
                if dag_run.run_type == "scheduled":
                    raise AirflowSkipException(str(e)) from e
                raise

    @task
    def feature_shards(snap: dict) -> list[dict]:
        from musicvae.core.config import shard_size
        from musicvae.retrain.steps import feature_shards

        with fail_fast():
            return feature_shards(settings(), snap["snapshot_id"], shard_size())

    # The pretrained front end is a network too: it runs where the GPU is, a shard per task.
    @task(queue=TRAINING_QUEUE)
    def features(shard: dict, params=None) -> dict:
        from musicvae.retrain.steps import prepare_features

        with fail_fast():
            return prepare_features(
                settings(), shard["snapshot_id"], params["audio_frontend"], shard=shard
            )

    @task(queue=TRAINING_QUEUE, pool=TRAINING_POOL)
    def train(snap: dict, _features: list[dict], params=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from musicvae.retrain.steps import RetrainParams
        from musicvae.retrain.steps import train as train_model

        with fail_fast():
            config = RetrainParams.from_dict(params)
            if params["dry_run"]:
                raise AirflowSkipException(
                    f"dry run: snapshot {snap['snapshot_id']} ({snap['n_tracks']} valid tracks) "
                    f"and features are ready; parameters {config} are valid; nothing trained"
                )
            candidate = train_model(settings(), snap["snapshot_id"], config)
        if candidate is None:
            raise AirflowSkipException("this snapshot and these parameters are already registered")
        return candidate

    @task
    def register(candidate: dict, run_id=None) -> int:
        from musicvae.retrain.steps import register as register_model

        with fail_fast():
            return register_model(settings(), candidate, run_id)

    @task
    def evaluate(version: int) -> int:
        from musicvae.retrain.model_report import report

        with fail_fast():
            summary = report(settings(), version)
        print(f"evaluation report: /musicvae/models/{version}/ ({summary['evaluation_prefix']})")
        return version

    @task
    def gate(version: int, params=None) -> dict:
        from musicvae.retrain.promotion import judge

        with fail_fast():
            return {"version": version, **judge(settings(), version, params["promotion_margin"])}

    @task(outlets=[MODEL_CHAMPION])
    def promote(decision: dict, review: dict) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from musicvae.retrain.promotion import record, with_review

        version = decision.pop("version")
        with fail_fast():
            decision = record(settings(), version, with_review(decision, review))
        if not decision["promoted"]:
            # No asset event: the catalogue stays clustered with the champion.
            raise AirflowSkipException(decision["reason"])
        return decision

    snap = snapshot()
    decision = gate(evaluate(register(train(snap, features.expand(shard=feature_shards(snap))))))
    # Waits for a person in the UI only when the run asks for it and the gate passed.
    review = ChampionApproval(task_id="review", decision=decision)
    promote(decision, review.output)


musicvae_retrain()
