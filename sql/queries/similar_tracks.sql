-- The 10 songs that sound most like one song: nearest neighbours by cosine distance in the
-- champion model's latent space (HNSW index). Run:
--   psql "$URL" -v track_id="'bimodal_balanced/A001'" -f sql/queries/similar_tracks.sql
SELECT track_id, artist, title, genre, round(distance::numeric, 4) AS distance
FROM similar_tracks(:track_id, 10);
