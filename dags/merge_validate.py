"""Profiles newly ingested tracks and quarantines the ones that fail, with reasons."""

from airflow.sdk import dag, task

from musicvae.assets import CATALOGUE_RAW, CATALOGUE_VALIDATED, DEFAULT_ARGS, settings


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

        from musicvae.validate import run_validation

        result = run_validation(settings(), run_id)
        if not result.tracks_checked:
            raise AirflowSkipException("no new tracks to validate")
        return result.as_dict()

    validate()


merge_validate()
