-- similar_tracks() searches with ef_search 60. Measured on 1,000,000 embeddings (d = 32,
-- benchmarks/bench_sql.py, indexes built with ef_construction 128), 10-NN recall@10 against
-- exact search and p95 latency: ef_search 40: 0.976, 6.8 ms; 60: 0.984, 7.9 ms; 80: 0.986,
-- 8.7 ms. With pgvector's default graph (ef_construction 64) and ef_search 40 it was 0.912.
ALTER FUNCTION similar_tracks(text, integer) SET hnsw.ef_search = 60;
