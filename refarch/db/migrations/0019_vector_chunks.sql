-- Long texts are chunked (refarch.source.chunking): a row may have several vectors, one per chunk.
-- The pgvector tables are keyed by row and chunk; a chunk's own keys (its number, place and hash) are
-- kept in `chunk_meta`. Every vector already there is its row's only chunk, number 0. Tables made
-- before (generation 1's and any `product_vectors_g<n>`) change here, as their owner: the runtimes'
-- roles may not alter them.
DO $$
DECLARE
    vectors regclass;
    primary_key name;
BEGIN
    FOR vectors IN
        SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname ~ '^product_vectors(_g[0-9]{1,9})?$'
    LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = vectors AND attname = 'chunk');
        SELECT conname INTO primary_key FROM pg_constraint WHERE conrelid = vectors AND contype = 'p';
        EXECUTE format(
            'ALTER TABLE %s ADD COLUMN chunk integer NOT NULL DEFAULT 0, ADD COLUMN chunk_meta jsonb,'
            ' DROP CONSTRAINT %I, ADD PRIMARY KEY (product_id, chunk)',
            vectors, primary_key
        );
    END LOOP;
END $$;
