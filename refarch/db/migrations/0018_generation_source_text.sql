-- The embedded text a generation's vectors were made from: the source definition's text fingerprint
-- (refarch.source). A new text is a new generation, like a new model: the re-index compares it with
-- the definition applied (docs/own-table.md). `refarch db migrate` fills it for the generations made
-- before; every generation made after records the text applied when it is created.
ALTER TABLE index_generations ADD COLUMN source_text text;

CREATE FUNCTION current_source_text() RETURNS text
LANGUAGE sql STABLE AS $$ SELECT text_fingerprint FROM source_definition $$;

ALTER TABLE index_generations ALTER COLUMN source_text SET DEFAULT current_source_text();

-- Emu (which generations keep their vectors), reconcile and the re-index (which text is current) read it.
GRANT SELECT ON source_definition TO refarch_web, refarch_emu, refarch_pelican;

-- A source's metadata is kept whole in the pgvector tables' `metadata` (refarch.index.pgvector_index);
-- the product columns are NULL for another source. Tables made before (generation 1's and any
-- `product_vectors_g<n>`) get the column here, as their owner: the runtimes' roles may not alter them.
DO $$
DECLARE
    vectors regclass;
BEGIN
    FOR vectors IN
        SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname ~ '^product_vectors(_g[0-9]{1,9})?$'
    LOOP
        EXECUTE format(
            'ALTER TABLE %s ADD COLUMN IF NOT EXISTS metadata jsonb, ALTER COLUMN sku DROP NOT NULL,'
            ' ALTER COLUMN name DROP NOT NULL, ALTER COLUMN category DROP NOT NULL, ALTER COLUMN price DROP NOT NULL',
            vectors
        );
    END LOOP;
END $$;
