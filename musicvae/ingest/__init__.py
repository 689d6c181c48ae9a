"""Stage 1, `merge_ingest`: reading a landing zone laid out as MERGE releases unpack (a local
folder or an S3 prefix), and copying new or changed files into object storage by content hash.

`landing` lists and reads files; `merge` turns them into tracks with their metadata and the
reasons some are rejected; `run` is the DAG's task, writing `raw/` and the `tracks` rows.

May import `core` only: ingest knows nothing of models or clusters.
"""
