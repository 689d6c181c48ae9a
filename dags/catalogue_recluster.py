"""Embeds the whole valid catalogue with the newest model and clusters it.

The embedding pass is mapped over shards (MUSICVAE_SHARD_SIZE tracks each), so Airflow's
workers share it; the recluster task then clusters every shard's embeddings and writes the run
in one transaction.
"""

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
    def shards(run_id=None) -> list[dict]:
        from musicvae.catalogue.shards import plan

        with fail_fast():
            return plan(settings(), run_id)

    @task
    def embed(shard: dict) -> dict:
        from musicvae.catalogue.shards import embed

        with fail_fast():
            return embed(settings(), shard)

    @task
    def recluster(embedded: list[dict], run_id=None) -> dict:
        from musicvae.catalogue.recluster import run_recluster

        with fail_fast():
            return run_recluster(settings(), run_id, shards=list(embedded)).as_dict()

    recluster(embed.expand(shard=shards()))


catalogue_recluster()
