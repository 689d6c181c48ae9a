-- Great Expectations results of every validation run, one row per expectation, so that data
-- quality can be followed over time with SQL; and the run's outcome as a whole.
ALTER TABLE data_quality_runs
    ADD COLUMN status text NOT NULL DEFAULT 'passed' CHECK (status IN ('passed', 'failed')),
    ADD COLUMN failure text,                  -- why a failed run failed (what to fix)
    ADD COLUMN valid_fraction real,
    ADD COLUMN docs_key text;                 -- object key of the run's Data Docs index.html

CREATE TABLE expectation_results (
    run_id          text NOT NULL REFERENCES data_quality_runs (run_id) ON DELETE CASCADE,
    suite           text NOT NULL,            -- e.g. 'track_profiles', 'metadata.bimodal_balanced'
    position        integer NOT NULL,         -- order within the suite
    expectation     text NOT NULL,            -- e.g. 'expect_column_values_to_be_between'
    column_name     text,
    kwargs          jsonb NOT NULL,
    severity        text NOT NULL CHECK (severity IN ('critical', 'warning')),
    success         boolean NOT NULL,
    element_count   integer,
    unexpected_count integer,
    unexpected_percent real,
    observed_value  jsonb,
    PRIMARY KEY (run_id, suite, position)
);
CREATE INDEX expectation_results_trend_idx ON expectation_results (suite, expectation, column_name);

-- Duplicate-content checks look tracks up by content hash.
CREATE INDEX tracks_audio_sha256_idx ON tracks (audio_sha256);
CREATE INDEX tracks_lyrics_sha256_idx ON tracks (lyrics_sha256);
-- Profiles are reused by content hash: content already profiled is not decoded again.
CREATE INDEX track_profiles_audio_sha256_idx ON track_profiles (audio_sha256);
CREATE INDEX track_profiles_lyrics_sha256_idx ON track_profiles (lyrics_sha256);
