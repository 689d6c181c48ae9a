-- How the genres of one cluster split up (first listed genre, as the research labels did). Run:
--   psql "$URL" -v cluster_id=3 -f sql/queries/cluster_genre_mix.sql
SELECT coalesce(genre, '(no genre)') AS genre, count(*) AS tracks,
       round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS percent
FROM current_cluster_assignments
WHERE cluster_id = :cluster_id
GROUP BY 1
ORDER BY tracks DESC, genre;
