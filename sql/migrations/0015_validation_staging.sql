-- The columns the data-quality suites and the drift check read of each track a validation run
-- checks, staged here by the run's last task a shard at a time, so that Great Expectations runs
-- its suites in PostgreSQL over the whole batch (uniqueness across shards included) while the
-- task holds one shard (musicvae/quality/staging.py). Rows live for one run: its last
-- transaction deletes them, and a retry starts by deleting what an interrupted try left.
-- Unlogged: a crash loses only what the retry stages again.
CREATE UNLOGGED TABLE validation_staging (
    run_id                text NOT NULL,
    track_id              text NOT NULL,
    valid                 boolean NOT NULL,
    staged_at             timestamptz NOT NULL DEFAULT now(),
    audio_decodable       boolean,
    digital_silence       boolean,
    lyrics_bom            boolean,
    pairing               text,
    expected_pairing      text,
    duplicate_of          text,
    sample_rate           double precision,
    duration_s            double precision,
    rms_dbfs              double precision,
    peak                  double precision,
    clipped_fraction      double precision,
    leading_silence_s     double precision,
    trailing_silence_s    double precision,
    lyrics_words          double precision,
    lyrics_chars          double precision,
    lyrics_garbage_ratio  double precision
);
-- No primary key: a track listed twice must reach the uniqueness expectation, not fail the COPY.
CREATE INDEX validation_staging_run ON validation_staging (run_id);
