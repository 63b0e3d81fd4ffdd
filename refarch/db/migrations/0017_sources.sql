-- The synced table is configuration (refarch/source, docs/own-table.md). `refarch db migrate` applies
-- these fixed tables, then creates what the definition asks for (refarch.source.capture): triggers
-- on the table, the `source_rows` view every runtime reads, and an expression index for keyword search.

-- The definition this database syncs, as last applied: a database syncs one table, and a change of
-- the embedded text or of the metadata columns is noticed here (a re-index, or a metadata backfill).
CREATE TABLE source_definition (
    id                   integer     PRIMARY KEY CHECK (id = 1),
    source_table         text        NOT NULL,
    key_column           text        NOT NULL,
    text_fingerprint     text        NOT NULL,
    metadata_fingerprint text        NOT NULL,
    definition           jsonb       NOT NULL,
    applied_at           timestamptz NOT NULL DEFAULT now()
);

-- A table brought by its owner is never altered: its rows' ids and versions live here. Each key
-- gets a positive bigint id (the id of its vector, its ledger row and its messages, whatever the
-- key's type) and a version bumped on every change that matters to sync. A deleted key keeps its
-- row (present = false), so a key inserted again continues past its tombstone's version.
CREATE TABLE source_keys (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source     text        NOT NULL,
    key        text        NOT NULL,
    version    bigint      NOT NULL CHECK (version > 0),
    present    boolean     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, key)
);
