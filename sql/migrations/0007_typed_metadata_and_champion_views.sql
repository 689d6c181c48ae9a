-- Typed columns derived from MERGE's messy metadata strings ('1970-??-??', '20/06/2005'),
-- kept beside the raw values.
ALTER TABLE tracks
    ADD COLUMN release_year smallint GENERATED ALWAYS AS
        (substring(year FROM '(1[89][0-9]{2}|20[0-9]{2})')::smallint) STORED,
    ADD COLUMN duration_s real GENERATED ALWAYS AS
        (CASE WHEN metadata->>'Duration' ~ '^[0-9]+(\.[0-9]+)?$'
              THEN (metadata->>'Duration')::real END) STORED;

-- The views read the champion's latest run: between a promotion and the recluster it
-- triggers, users keep seeing the previous champion's clusters, never a mix.
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

CREATE OR REPLACE VIEW cluster_summary AS
WITH latest AS (
    SELECT r.run_id, r.model_version, r.created_at FROM cluster_runs r
    JOIN model_aliases a ON a.alias = 'champion' AND a.version = r.model_version
    ORDER BY r.created_at DESC, r.run_id DESC LIMIT 1
)
SELECT c.cluster_id, c.label, c.size, c.top_genres, c.top_quadrants,
       l.model_version, l.run_id, l.created_at
FROM latest l JOIN clusters c USING (run_id)
ORDER BY c.size DESC, c.cluster_id;
