-- Index generations (docs/reindex.md): a generation is one embedder (model id + dimension) and one
-- vector index target (a pgvector table, or a Pinecone index and namespace). Search reads the
-- one `active` generation; at most one is `building` (filled through the bulk lane by
-- `refarch reindex`); a generation replaced by a switch is `retired` and still kept in sync, so
-- a rollback is instant, until `refarch reindex --gc` drops it after the grace period.
CREATE TABLE index_generations (
    id           bigint      PRIMARY KEY CHECK (id > 0),
    status       text        NOT NULL CHECK (status IN ('building', 'active', 'retired', 'dropped')),
    -- {"kind": "local"|"openai", "model": ..., "dimensions": ...}; NULL only for generation 1 until
    -- the first runtime records the embedder it was configured with (the one that built the index).
    embedder     jsonb,
    model_id     text,
    dimension    integer     CHECK (dimension > 0),
    backend      text        CHECK (backend IN ('pgvector', 'pinecone')),
    -- pgvector: {"table": ...}; Pinecone: {"index_name": ..., "host": ..., "namespace": ...}
    target       jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    activated_at timestamptz,
    retired_at   timestamptz,
    dropped_at   timestamptz,
    CHECK (embedder IS NOT NULL OR id = 1)
);
CREATE UNIQUE INDEX index_generations_one_active_idx ON index_generations ((true)) WHERE status = 'active';
CREATE UNIQUE INDEX index_generations_one_building_idx ON index_generations ((true)) WHERE status = 'building';

-- Generation 1 is what this database indexed so far: product_vectors (or the configured Pinecone
-- namespace) with the configured embedder.
INSERT INTO index_generations (id, status, activated_at) VALUES (1, 'active', now());

-- The generation search reads (one row, by the unique index above).
CREATE FUNCTION active_generation() RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT id FROM index_generations WHERE status = 'active' $$;

-- The ledger is kept per generation: the same product is indexed once per model. Existing rows
-- are generation 1's; a writer that names no generation writes the active one's.
ALTER TABLE sync_state ADD COLUMN generation bigint NOT NULL DEFAULT 1 REFERENCES index_generations (id);
ALTER TABLE sync_state ALTER COLUMN generation SET DEFAULT active_generation();
ALTER TABLE sync_state DROP CONSTRAINT sync_state_pkey;
ALTER TABLE sync_state ADD PRIMARY KEY (generation, product_id);
DROP INDEX sync_state_failed_idx;
CREATE INDEX sync_state_failed_idx ON sync_state (generation, product_id) WHERE status = 'failed';

-- What a person sees per row is what search reads: the active generation's ledger.
CREATE OR REPLACE VIEW product_sync_status AS
SELECT p.id AS product_id,
       p.version,
       s.indexed_version,
       CASE
           WHEN s.status = 'failed' THEN 'failed'
           WHEN s.product_id IS NULL OR s.indexed_version < p.version THEN 'pending'
           ELSE 'indexed'
       END AS status,
       CASE WHEN s.status = 'failed' THEN s.last_error END AS last_error,
       s.attempts,
       s.indexed_at
FROM products p
LEFT JOIN sync_state s ON s.product_id = p.id AND s.generation = active_generation();

-- A bootstrap run fills one generation; one run in progress per generation.
ALTER TABLE bootstrap_runs ADD COLUMN generation bigint NOT NULL DEFAULT 1 REFERENCES index_generations (id);
ALTER TABLE bootstrap_runs ALTER COLUMN generation DROP DEFAULT;
DROP INDEX bootstrap_one_running_idx;
CREATE UNIQUE INDEX bootstrap_one_running_idx ON bootstrap_runs (generation) WHERE status = 'running';

GRANT SELECT ON index_generations TO refarch_web, refarch_emu, refarch_pelican;
-- The first runtime to start records generation 1's embedder and target (refarch.generations.adopt);
-- Emu also locks the live generations FOR SHARE while it writes to them, which needs an UPDATE right.
GRANT UPDATE (embedder, model_id, dimension, backend, target) ON index_generations TO refarch_emu, refarch_web;
