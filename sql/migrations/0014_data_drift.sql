-- Is the new data like the data the model was trained on? One row per validation run that had a
-- champion to compare with (musicvae/quality/data_drift.py): merge_validate writes the feature drift of
-- the batch's valid tracks against the champion's training snapshot, and catalogue_assign adds
-- the share of them that land far from every cluster centre once it has embedded them.
CREATE TABLE drift_runs (
    run_id            text PRIMARY KEY REFERENCES data_quality_runs (run_id) ON DELETE CASCADE,
    checked_at        timestamptz NOT NULL DEFAULT now(),
    model_version     integer NOT NULL,          -- the champion compared with
    snapshot_id       text NOT NULL,             -- its training snapshot
    reference_tracks  integer NOT NULL,
    batch_tracks      integer NOT NULL,          -- valid tracks of the batch
    features          jsonb NOT NULL,            -- {"rms_dbfs": {"psi", "ks", "p_value", ...}}
    drifted_features  text[] NOT NULL,
    -- Filled in by catalogue_assign (NULL until it has embedded the batch):
    cluster_run_id    text,                      -- whose centres the distances are to
    ood_threshold     real,                      -- distance above which a track is out
    ood_tracks        integer,
    ood_share         real,
    drifted           boolean NOT NULL           -- a drifted feature, or too many tracks out
);

-- The trend, one row per run and feature.
CREATE VIEW drift_features AS
SELECT d.run_id, d.checked_at, d.model_version, f.key AS feature,
       (f.value ->> 'psi')::real AS psi,
       (f.value ->> 'ks')::real AS ks,
       (f.value ->> 'p_value')::double precision AS p_value,
       (f.value ->> 'drifted')::boolean AS drifted
FROM drift_runs d, jsonb_each(d.features) AS f;
