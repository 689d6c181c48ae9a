"""Profiles newly ingested tracks, runs the data-quality suites and quarantines the tracks that
fail, with reasons. A batch-level failure fails the run without retries and emits no asset event,
so nothing downstream trains on it."""

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
    @task(outlets=[CATALOGUE_VALIDATED])
    def validate(run_id=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from musicvae.quality.validate import run_validation

        with fail_fast():
            result = run_validation(settings(), run_id)
        if not result.tracks_checked:
            raise AirflowSkipException("no new tracks to validate")
        return result.as_dict()

    validate()


merge_validate()
