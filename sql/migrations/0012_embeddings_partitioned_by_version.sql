-- track_embeddings is partitioned by model version, as cluster_assignments is by run (0011).
-- A version's first recluster run COPYs its embeddings into a table made in its transaction:
-- no index and no foreign-key trigger per row. The primary key is then built by one sort, each
-- foreign key is checked by one join, and the table is attached as the version's partition.
-- Measured before this (1,000,000 embeddings + assignments, bench_sql): the embeddings' per-row
-- key checks held the writes at 67k-101k rows/s. A version's partition also carries that
-- version's HNSW index alone, and dropping a version's embeddings is dropping one table.
--
-- Embeddings written before this migration stay in the default partition, which starts as the
-- replaced table; so do later writes for those versions (a partition cannot take a version
-- whose rows are in the default one).
ALTER TABLE track_embeddings RENAME TO track_embeddings_default;
ALTER TABLE track_embeddings_default
    RENAME CONSTRAINT track_embeddings_pkey TO track_embeddings_default_pkey;

CREATE TABLE track_embeddings (
    track_id        text NOT NULL REFERENCES tracks (track_id) ON DELETE CASCADE,
    model_version   integer NOT NULL REFERENCES model_versions (version),
    run_id          text NOT NULL REFERENCES cluster_runs (run_id) ON DELETE CASCADE,
    embedding       vector NOT NULL,
    PRIMARY KEY (track_id, model_version)
) PARTITION BY LIST (model_version);

ALTER TABLE track_embeddings ATTACH PARTITION track_embeddings_default DEFAULT;

CREATE FUNCTION track_embeddings_partition(version integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'track_embeddings_v' || version $$;

-- A new, empty table for one version's embeddings, or NULL when the version's rows go through
-- track_embeddings (it has a partition already, or rows in the default partition).
CREATE FUNCTION track_embeddings_load_table(version integer) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    name text := track_embeddings_partition(version);
BEGIN
    IF to_regclass(name) IS NOT NULL
       OR EXISTS (SELECT FROM track_embeddings_default d WHERE d.model_version = version) THEN
        RETURN NULL;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE track_embeddings INCLUDING DEFAULTS '
                   'INCLUDING CONSTRAINTS)', name);
    RETURN name;
END;
$$;

-- Key, foreign keys (each checked once, over the whole table) and attachment of a table that
-- track_embeddings_load_table made, in the caller's transaction.
CREATE FUNCTION track_embeddings_attach(version integer) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    name text := track_embeddings_partition(version);
BEGIN
    EXECUTE format(
        'ALTER TABLE %1$I ADD PRIMARY KEY (track_id, model_version),
         ADD FOREIGN KEY (track_id) REFERENCES tracks (track_id) ON DELETE CASCADE,
         ADD FOREIGN KEY (model_version) REFERENCES model_versions (version),
         ADD FOREIGN KEY (run_id) REFERENCES cluster_runs (run_id) ON DELETE CASCADE', name);
    EXECUTE format('ALTER TABLE track_embeddings ATTACH PARTITION %I FOR VALUES IN (%s)',
                   name, version);
END;
$$;

REVOKE ALL ON FUNCTION track_embeddings_load_table(integer), track_embeddings_attach(integer)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION track_embeddings_load_table(integer), track_embeddings_attach(integer)
    TO musicvae_writer;
