"""Copies new or changed MERGE files from the landing zone to object storage."""

from airflow.sdk import Param, dag, task

from musicvae.assets import CATALOGUE_RAW, DEFAULT_ARGS, cron, fail_fast, settings


@dag(
    schedule=cron("@hourly"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["musicvae", "ingest"],
    params={
        "landing": Param(
            "",
            type="string",
            title="Landing zone",
            description="Folder or s3://bucket/prefix holding MERGE_* folders, or one of "
            "them; empty uses MUSICVAE_LANDING.",
        )
    },
)
def merge_ingest():
    @task(outlets=[CATALOGUE_RAW])
    def ingest(params=None, run_id=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from musicvae.ingest.run import run_ingest

        with fail_fast():
            result = run_ingest(settings(), run_id, params.get("landing") or None)
        if not result.changed:
            # A skipped task emits no asset event, so nothing downstream runs for no news.
            raise AirflowSkipException("nothing new or changed in the landing zone")
        return result.as_dict()

    ingest()


merge_ingest()
