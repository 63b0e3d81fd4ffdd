-- The ledger: what the vector index holds for each product, written only by Emu.
-- No foreign key to products: the ledger outlives a deleted row (status 'deleted').
CREATE TABLE sync_state (
    product_id      bigint      PRIMARY KEY,
    indexed_version bigint      NOT NULL DEFAULT 0,
    content_hash    text,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'indexed', 'failed', 'deleted')),
    last_error      text,
    attempts        integer     NOT NULL DEFAULT 0,
    indexed_at      timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sync_state_failed_idx ON sync_state (product_id) WHERE status = 'failed';

-- What a person sees per row: 'pending' whenever the row is newer than what is indexed.
CREATE VIEW product_sync_status AS
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
LEFT JOIN sync_state s ON s.product_id = p.id;

-- One row per call to the embedding provider: the cost audit (and what benchmarks count).
CREATE TABLE embed_calls (
    id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    called_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    model     text        NOT NULL,
    texts     integer     NOT NULL
);
