"""Assigns newly validated tracks to the nearest current cluster, between retrains."""

from airflow.sdk import dag, task

from musicvae.assets import CATALOGUE_VALIDATED, DEFAULT_ARGS, fail_fast, settings


@dag(
    schedule=[CATALOGUE_VALIDATED],
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["musicvae", "clustering"],
)
def catalogue_assign():
    @task
    def assign() -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from musicvae.catalogue.assign import assign_new_tracks

        with fail_fast():
            result = assign_new_tracks(settings())
        if not result.assigned:
            raise AirflowSkipException(result.reason)
        return result.as_dict()

    assign()


catalogue_assign()
