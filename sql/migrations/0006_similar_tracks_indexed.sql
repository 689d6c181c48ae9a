-- similar_tracks() as 0003 wrote it compared against a joined row, which the planner cannot
-- answer from the HNSW index. Fetch the query vector first and pass it as a parameter, so that
-- `ORDER BY embedding <=> $1 LIMIT n` is an index scan. The scan takes 2k + 10 candidates and
-- the join then drops tracks no longer valid: only a track quarantined after it was embedded
-- has an embedding and is not valid, so the headroom covers it.
CREATE OR REPLACE FUNCTION similar_tracks(query_track text, k integer DEFAULT 10)
RETURNS TABLE (track_id text, artist text, title text, genre text, distance double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v integer;
    q vector;
BEGIN
    SELECT a.version INTO v FROM model_aliases a WHERE a.alias = 'champion';
    IF v IS NULL THEN
        RAISE EXCEPTION 'no champion model yet: run musicvae_retrain first';
    END IF;
    SELECT e.embedding INTO q FROM track_embeddings e
    WHERE e.model_version = v AND e.track_id = query_track;
    IF q IS NULL THEN
        RAISE EXCEPTION 'track % has no embedding from the champion (model version %)',
            query_track, v;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT n.track_id, t.artist, t.title, t.genre, n.distance
         FROM (SELECT e.track_id,
                      (e.embedding::vector(%1$s) <=> $1::vector(%1$s))::double precision
                          AS distance
               FROM track_embeddings e
               WHERE e.model_version = %2$s AND e.track_id <> $2
               ORDER BY e.embedding::vector(%1$s) <=> $1::vector(%1$s)
               LIMIT 2 * $3 + 10) n
         JOIN tracks t ON t.track_id = n.track_id
         WHERE t.status = ''valid''
         ORDER BY n.distance
         LIMIT $3', vector_dims(q), v)
    USING q, query_track, k;
END;
$$;
