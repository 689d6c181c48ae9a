-- cluster_assignments is partitioned by run. A recluster run loads its assignments into a table
-- of its own, created in its transaction: COPY there meets no index and no foreign-key trigger.
-- The primary key is then built by one sort and each foreign key is checked by one join, and
-- the table is attached as the run's partition before the run commits. Per-row key checks
-- were most of the write time (2,000,000 rows: 23 s, of which the assignments took half).
-- Readers see the run whole or not at all, as before: the new table is invisible until commit.
--
-- Rows of runs without a partition of their own (older runs, incremental assignments to them)
-- live in the default partition, which starts as the table this migration replaces.
ALTER TABLE cluster_assignments RENAME TO cluster_assignments_default;
ALTER TABLE cluster_assignments_default
    RENAME CONSTRAINT cluster_assignments_pkey TO cluster_assignments_default_pkey;

CREATE TABLE cluster_assignments (
    run_id          text NOT NULL REFERENCES cluster_runs (run_id) ON DELETE CASCADE,
    track_id        text NOT NULL REFERENCES tracks (track_id) ON DELETE CASCADE,
    cluster_id      integer NOT NULL,
    distance        real NOT NULL,                 -- Euclidean distance to the cluster centroid
    assigned_by     text NOT NULL DEFAULT 'recluster'
        CONSTRAINT cluster_assignments_assigned_by_check
        CHECK (assigned_by IN ('recluster', 'incremental')),
    PRIMARY KEY (run_id, track_id),
    FOREIGN KEY (run_id, cluster_id) REFERENCES clusters (run_id, cluster_id) ON DELETE CASCADE
) PARTITION BY LIST (run_id);

ALTER TABLE cluster_assignments ATTACH PARTITION cluster_assignments_default DEFAULT;

-- The views named the replaced table; point them at the partitioned one (same definitions).
CREATE OR REPLACE VIEW current_cluster_assignments AS
WITH latest AS (
    SELECT r.run_id, r.model_version FROM cluster_runs r
    JOIN model_aliases a ON a.alias = 'champion' AND a.version = r.model_version
    ORDER BY r.created_at DESC, r.run_id DESC LIMIT 1
)
SELECT t.track_id, t.subset, t.song_id, t.artist, t.title, t.genres, t.genre, t.quadrant,
       a.cluster_id, c.label AS cluster_label, a.distance, l.model_version, a.run_id,
       t.release_year
FROM latest l
JOIN cluster_assignments a ON a.run_id = l.run_id
JOIN clusters c ON c.run_id = a.run_id AND c.cluster_id = a.cluster_id
JOIN tracks t ON t.track_id = a.track_id
WHERE t.status = 'valid';

CREATE OR REPLACE VIEW cluster_changes AS
WITH runs AS (
    SELECT run_id, row_number() OVER (ORDER BY created_at DESC, run_id DESC) AS n
    FROM cluster_runs
)
SELECT t.track_id, t.artist, t.title, t.genre,
       before.cluster_id AS previous_cluster, after.cluster_id AS current_cluster,
       (SELECT run_id FROM runs WHERE n = 2) AS previous_run,
       (SELECT run_id FROM runs WHERE n = 1) AS current_run
FROM cluster_assignments after
JOIN cluster_assignments before
  ON before.track_id = after.track_id AND before.run_id = (SELECT run_id FROM runs WHERE n = 2)
JOIN tracks t ON t.track_id = after.track_id
WHERE after.run_id = (SELECT run_id FROM runs WHERE n = 1)
  AND before.cluster_id <> after.cluster_id;

-- The pipeline role changes no schema; these two functions are the only DDL it can cause.
-- Partition names hash the run id: run ids are free text (Airflow's contain ':' and '+').
CREATE FUNCTION cluster_assignments_partition(run text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'cluster_assignments_' || left(md5(run), 16) $$;

-- A new, empty table for one run's assignments, or NULL when the run already has a partition
-- (a rerun, whose DELETE emptied it: its rows then go through the partitioned table).
CREATE FUNCTION cluster_assignments_load_table(run text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    name text := cluster_assignments_partition(run);
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE cluster_assignments INCLUDING DEFAULTS '
                   'INCLUDING CONSTRAINTS)', name);
    RETURN name;
END;
$$;

-- Key, foreign keys (each checked once, over the whole table) and attachment of a table that
-- cluster_assignments_load_table made, in the caller's transaction.
CREATE FUNCTION cluster_assignments_attach(run text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    name text := cluster_assignments_partition(run);
BEGIN
    EXECUTE format(
        'ALTER TABLE %1$I ADD PRIMARY KEY (run_id, track_id),
         ADD FOREIGN KEY (run_id) REFERENCES cluster_runs (run_id) ON DELETE CASCADE,
         ADD FOREIGN KEY (track_id) REFERENCES tracks (track_id) ON DELETE CASCADE,
         ADD FOREIGN KEY (run_id, cluster_id) REFERENCES clusters (run_id, cluster_id)
             ON DELETE CASCADE', name);
    EXECUTE format('ALTER TABLE cluster_assignments ATTACH PARTITION %I FOR VALUES IN (%L)',
                   name, run);
END;
$$;

REVOKE ALL ON FUNCTION cluster_assignments_load_table(text), cluster_assignments_attach(text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cluster_assignments_load_table(text), cluster_assignments_attach(text)
    TO musicvae_writer;
