"""Stage 2, `merge_validate`: profiling each new track, the Great Expectations suites, the
valid-or-quarantined verdict, the data-quality report, releasing a quarantined track by hand,
and comparing a batch with the data the champion model was trained on.

`data_quality.toml` holds every threshold (read by `thresholds`).

May import `core`, `ingest` (the MERGE metadata reader) and `registry` (which snapshot the
champion was trained on).
"""
