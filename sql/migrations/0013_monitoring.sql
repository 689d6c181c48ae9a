-- What each recluster run changed against the run before it (musicvae/catalogue/churn.py), written in the
-- run's own transaction. Cluster ids are matched across runs by member overlap, so a track whose
-- cluster id changed moved, and an id only one of the two runs has was born or died.
CREATE TABLE cluster_run_changes (
    run_id           text PRIMARY KEY REFERENCES cluster_runs (run_id) ON DELETE CASCADE,
    previous_run_id  text NOT NULL,           -- kept when that run is deleted later
    tracks_compared  integer NOT NULL,        -- tracks assigned in both runs
    tracks_moved     integer NOT NULL,
    share_moved      real NOT NULL,
    ari              real,                    -- between the two runs' assignments
    born             integer[] NOT NULL,      -- cluster ids new in this run
    died             integer[] NOT NULL,      -- cluster ids of the previous run gone from this one
    splits           jsonb NOT NULL,          -- {"previous id": [current ids]}
    merges           jsonb NOT NULL,          -- {"current id": [previous ids]}
    flows            jsonb NOT NULL           -- [[previous id, current id, tracks], ...]
);

-- One row per flow of tracks from a previous cluster to a current one.
CREATE VIEW cluster_run_flows AS
SELECT c.run_id, c.previous_run_id,
       (f ->> 0)::integer AS previous_cluster,
       (f ->> 1)::integer AS current_cluster,
       (f ->> 2)::integer AS tracks
FROM cluster_run_changes c, jsonb_array_elements(c.flows) AS f;

-- One card per cluster of the current run (the champion's latest, as in cluster_summary): a
-- name from its top genres and its most common quadrant (Russell's: Q1 exuberant, Q2 tense,
-- Q3 sad, Q4 calm), its size and mix, the 5 members nearest its centre (medoids) and the 3
-- clusters whose centres are nearest its own.
CREATE VIEW cluster_cards AS
WITH ranked AS (
    SELECT a.cluster_id, a.track_id, a.distance,
           row_number() OVER (PARTITION BY a.cluster_id ORDER BY a.distance, a.track_id) AS rank
    FROM cluster_assignments a
    WHERE a.run_id = (SELECT run_id FROM cluster_summary LIMIT 1)
)
SELECT s.cluster_id,
       s.label || coalesce(' · mostly ' || mood.name, '') AS name,
       s.size, s.top_genres, s.top_quadrants,
       (SELECT jsonb_agg(jsonb_build_object('track_id', t.track_id, 'artist', t.artist,
                'title', t.title, 'audio_key', t.audio_key, 'distance', r.distance)
                ORDER BY r.rank)
        FROM ranked r JOIN tracks t USING (track_id)
        WHERE r.cluster_id = s.cluster_id AND r.rank <= 5) AS medoids,
       ARRAY(SELECT o.cluster_id FROM clusters o
             WHERE o.run_id = c.run_id AND o.cluster_id <> c.cluster_id
             ORDER BY o.centroid <-> c.centroid, o.cluster_id LIMIT 3) AS neighbours,
       s.run_id, s.model_version
FROM cluster_summary s
JOIN clusters c USING (run_id, cluster_id)
LEFT JOIN LATERAL (
    SELECT CASE q.key WHEN 'Q1' THEN 'exuberant' WHEN 'Q2' THEN 'tense'
                      WHEN 'Q3' THEN 'sad' WHEN 'Q4' THEN 'calm' END AS name
    FROM jsonb_each_text(s.top_quadrants) AS q
    ORDER BY q.value::integer DESC, q.key LIMIT 1
) mood ON true
ORDER BY s.cluster_id;
