-- Measured on 1,000,000 embeddings (benchmarks/bench_sql.py): pgvector's default ef_search of
-- 40 found 91% of the true 10 nearest neighbours. similar_tracks() searches wider; recluster
-- builds its per-version indexes with ef_construction 128 for a better graph.
ALTER FUNCTION similar_tracks(text, integer) SET hnsw.ef_search = 100;
