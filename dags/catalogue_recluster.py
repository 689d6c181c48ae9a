"""Embeds the whole valid catalogue with the newest model and clusters it."""

from airflow.sdk import dag, task

from musicvae.assets import DEFAULT_ARGS, MODEL_CHAMPION, fail_fast, settings


@dag(
    schedule=[MODEL_CHAMPION],
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["musicvae", "clustering"],
)
def catalogue_recluster():
    @task
    def recluster(run_id=None) -> dict:
        from musicvae.catalogue.recluster import run_recluster

        with fail_fast():
            return run_recluster(settings(), run_id).as_dict()

    recluster()


catalogue_recluster()
