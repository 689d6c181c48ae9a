-- Two group roles. Give people and services logins that are members of one of them:
--   CREATE ROLE alice LOGIN PASSWORD '…' IN ROLE musicvae_reader;   -- an analyst
--   CREATE ROLE etl LOGIN PASSWORD '…' IN ROLE musicvae_writer;     -- a pipeline worker
-- The schema owner (the login that runs migrations) keeps DDL: it migrates and builds indexes.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'musicvae_reader') THEN
        CREATE ROLE musicvae_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'musicvae_writer') THEN
        CREATE ROLE musicvae_writer NOLOGIN;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO musicvae_reader, musicvae_writer;

-- Analysts read every table and view, and search; nothing else.
GRANT SELECT ON ALL TABLES IN SCHEMA public TO musicvae_reader;
GRANT EXECUTE ON FUNCTION similar_tracks(text, integer) TO musicvae_reader, musicvae_writer;

-- The pipeline reads and writes rows.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO musicvae_writer;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO musicvae_writer;

-- Tables and views that later migrations create get the same grants.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO musicvae_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO musicvae_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO musicvae_writer;
