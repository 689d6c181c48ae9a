-- The songs of one cluster, closest to its centre first. Run:
--   psql "$URL" -v cluster_id=3 -f sql/queries/cluster_members.sql
SELECT track_id, artist, title, genre, quadrant, round(distance::numeric, 4) AS distance
FROM current_cluster_assignments
WHERE cluster_id = :cluster_id
ORDER BY distance, track_id;
