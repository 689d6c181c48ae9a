"""Copies new or changed MERGE files from the landing zone to object storage.

Hashing and uploading are mapped over shards of MUSICVAE_SHARD_SIZE tracks, so Airflow's
workers share them; the ingest task writes what they found in one transaction.
"""

from airflow.sdk import Param, dag, task

from musicvae.assets import CATALOGUE_RAW, DEFAULT_ARGS, fail_fast, ingest_schedule, settings


@dag(
    schedule=ingest_schedule(),
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
    @task
    def shards(params=None, run_id=None) -> list[dict]:
        from musicvae.ingest.run import plan_ingest

        with fail_fast():
            return plan_ingest(settings(), run_id, params.get("landing") or None)

    @task
    def upload(shard: dict) -> dict:
        from musicvae.ingest.run import upload_shard

        with fail_fast():
            return upload_shard(settings(), shard)

    @task(outlets=[CATALOGUE_RAW])
    def ingest(uploaded: list[dict], run_id=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from musicvae.ingest.run import run_ingest

        with fail_fast():
            result = run_ingest(settings(), run_id, shards=list(uploaded))
        if not result.changed:
            # A skipped task emits no asset event, so nothing downstream runs for no news.
            raise AirflowSkipException("nothing new or changed in the landing zone")
        return result.as_dict()

    ingest(upload.expand(shard=shards()))


merge_ingest()
