-- What users query besides current_cluster_assignments: cluster summaries, what moved, and
-- nearest neighbours through an HNSW index on the champion's embeddings.

-- Every cluster of the latest recluster run, largest first.
CREATE VIEW cluster_summary AS
WITH latest AS (
    SELECT run_id, model_version, created_at FROM cluster_runs
    ORDER BY created_at DESC, run_id DESC LIMIT 1
)
SELECT c.cluster_id, c.label, c.size, c.top_genres, c.top_quadrants,
       l.model_version, l.run_id, l.created_at
FROM latest l JOIN clusters c USING (run_id)
ORDER BY c.size DESC, c.cluster_id;

-- Tracks whose cluster differs between the two latest recluster runs (cluster ids are matched
-- across runs, so a different id means the track really moved).
CREATE VIEW cluster_changes AS
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

-- The k tracks nearest to one track (cosine distance) in the champion's latent space. Embedding
-- widths vary per model version, so the HNSW index is per version on a cast expression;
-- this function writes the query that matches it.
CREATE FUNCTION similar_tracks(query_track text, k integer DEFAULT 10)
RETURNS TABLE (track_id text, artist text, title text, genre text, distance double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v integer;
    d integer;
BEGIN
    SELECT a.version INTO v FROM model_aliases a WHERE a.alias = 'champion';
    IF v IS NULL THEN
        RAISE EXCEPTION 'no champion model yet: run musicvae_retrain first';
    END IF;
    SELECT vector_dims(e.embedding) INTO d FROM track_embeddings e
    WHERE e.model_version = v AND e.track_id = query_track;
    IF d IS NULL THEN
        RAISE EXCEPTION 'track % has no embedding from the champion (model version %)',
            query_track, v;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT e.track_id, t.artist, t.title, t.genre,
                (e.embedding::vector(%1$s) <=> q.embedding::vector(%1$s))::double precision
         FROM track_embeddings e
         JOIN tracks t ON t.track_id = e.track_id
         CROSS JOIN (SELECT embedding FROM track_embeddings
                     WHERE model_version = %2$s AND track_id = $1) q
         WHERE e.model_version = %2$s AND e.track_id <> $1 AND t.status = ''valid''
         ORDER BY e.embedding::vector(%1$s) <=> q.embedding::vector(%1$s)
         LIMIT $2', d, v)
    USING query_track, k;
END;
$$;
