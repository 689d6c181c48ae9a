"""The local stack's servers, one module each: PostgreSQL 18 + pgvector (`postgres`), the
SeaweedFS S3 server (`s3`), Airflow 3's processes (`airflow`) and the Redis broker of the
CeleryExecutor (`redis`), on the process and port plumbing they share (`processes`).
`musicvae.local.stack` composes them.

May import musicvae.core, musicvae.retrain.queues and musicvae.local.airflow_client.
"""
