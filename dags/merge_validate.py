"""Profiles newly ingested tracks, runs the data-quality suites and quarantines the tracks that
fail, with reasons. A batch-level failure fails the run without retries and emits no asset event,
so nothing downstream trains on it.

Decoding and profiling are mapped over shards of MUSICVAE_SHARD_SIZE tracks, so Airflow's
workers share them; the validate task runs the suites over the whole batch and writes it in one
transaction.
"""

from airflow.sdk import dag, task

from musicvae.assets import CATALOGUE_RAW, CATALOGUE_VALIDATED, DEFAULT_ARGS, fail_fast, settings


@dag(
    schedule=[CATALOGUE_RAW],
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["musicvae", "data-quality"],
)
def merge_validate():
    @task
    def shards(run_id=None) -> list[dict]:
        from musicvae.quality.validate import plan_validation

        with fail_fast():
            return plan_validation(settings(), run_id)

    @task
    def profile(shard: dict) -> dict:
        from musicvae.quality.validate import profile_shard

        with fail_fast():
            return profile_shard(settings(), shard)

    @task(outlets=[CATALOGUE_VALIDATED])
    def validate(profiled: list[dict], run_id=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from musicvae.quality.validate import run_validation

        with fail_fast():
            result = run_validation(settings(), run_id, shards=list(profiled))
        if not result.tracks_checked:
            raise AirflowSkipException("no new tracks to validate")
        return result.as_dict()

    validate(profile.expand(shard=shards()))


merge_validate()
