-- Lexical ranking for hybrid search (refarch/lexical_search.py). The row holds the text, so the
-- same full-text index serves every vector backend (pgvector and Pinecone alike).
--
-- SKU and name weigh most (A), then the category (B), then the description (C). The SKU goes
-- through the 'simple' configuration (no stemming: "SW-0000102" stays itself and its parts);
-- words through 'english' (stemmed, stop words dropped), the configuration queries use too.
-- A generated column stays true to the row on every INSERT and UPDATE, with no trigger to forget,
-- and does not take part in change capture (0002 compares only the columns people edit).
ALTER TABLE products ADD COLUMN search_document tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('simple'::regconfig, sku), 'A')
    || setweight(to_tsvector('english'::regconfig, name), 'A')
    || setweight(to_tsvector('english'::regconfig, category), 'B')
    || setweight(to_tsvector('english'::regconfig, description), 'C')
) STORED;

CREATE INDEX products_search_document_idx ON products USING gin (search_document);

-- Rate-limit counters for the public search and the write endpoints (refarch/rate_limits.py):
-- one row per client address and limit, a fixed window each. Every gunicorn worker and every
-- Fargate task counts in the same rows, so a limit holds for the whole service, without another
-- datastore to run and pay for at idle. UNLOGGED: counters need no crash safety and write no WAL.
CREATE UNLOGGED TABLE rate_limit_counters (
    key        text        PRIMARY KEY,
    hits       integer     NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX rate_limit_counters_expires_idx ON rate_limit_counters (expires_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON rate_limit_counters TO refarch_web;
