-- Songs whose cluster changed between the last two recluster runs (ids are matched across
-- runs, so a changed id is a real move). Run:
--   psql "$URL" -f sql/queries/tracks_that_moved.sql
SELECT track_id, artist, title, genre, previous_cluster, current_cluster
FROM cluster_changes
ORDER BY current_cluster, track_id;
