-- Tracks validated between retrains are assigned to the nearest cluster of the latest run
-- without reclustering; this says which assignments came that way.
ALTER TABLE cluster_assignments
    ADD COLUMN assigned_by text NOT NULL DEFAULT 'recluster'
        CHECK (assigned_by IN ('recluster', 'incremental'));
