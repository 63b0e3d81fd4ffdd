"""Change capture from the source definition: checked against the database, then created there.

`apply` runs as the last step of `refarch db migrate`, in one transaction under the migration lock.
It first checks the definition against the live table (`check`: every column there, of a fitting
type; the key the table's primary or unique key) and against what this database already syncs,
and refuses with every problem named before anything changes. Then it creates, idempotently:

- `source_rows`, the view every runtime reads a row through: id (the positive bigint of its
  vector, ledger row and messages), version, updated_at, key (as text), embedding_text (the
  template, rendered by the database), metadata (jsonb) and search_document (the weighted tsvector);
- `product_sync_status` over it (what the page and the status line show per row);
- for a table the project does not own: triggers that give each key an id and a version in
  `source_keys` and write the outbox (0002) when a watched column (embedded or metadata) changes,
  and a GIN expression index for keyword search. No column of the table is added or changed.
- for the project's own `products` (its version column predates sources): the version trigger's
  list of watched columns, from the definition.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from refarch.observability import logger
from refarch.source.definition import Source, SourceError, template_parts

if TYPE_CHECKING:
    from refarch.db import Connection

# The Postgres types each declared type accepts (information_schema's data_type).
_ACCEPTED_TYPES: dict[str, set[str]] = {
    "bigint": {"bigint", "integer", "smallint"},
    "uuid": {"uuid"},
    "text": {"text", "character varying", "character"},
    "number": {"numeric", "double precision", "real", "bigint", "integer", "smallint"},
    "integer": {"bigint", "integer", "smallint"},
    "boolean": {"boolean"},
    "timestamp": {"timestamp with time zone", "timestamp without time zone", "date"},
}
_KEY_CAST = {"bigint": "bigint", "uuid": "uuid", "text": "text"}


def check(conn: Connection, source: Source) -> None:
    """Refuse (SourceError, every problem named) a definition the table or this database cannot serve."""
    problems: list[str] = []
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (source.qualified_table,))
        row = cur.fetchone()
        if row is None or not row[0]:
            raise SourceError(source.path, [f"table {source.qualified_table} does not exist in this database"])
        cur.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (source.schema, source.table),
        )
        types = dict(cur.fetchall())
        cur.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a"
            " ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
            " WHERE i.indrelid = to_regclass(%s) AND i.indisunique AND i.indnkeyatts = 1 AND a.attname = %s"
            " AND i.indpred IS NULL)",
            (source.qualified_table, source.key),
        )
        unique_key = cur.fetchone()
    if source.key not in types:
        problems.append(f"key column {source.key!r} is not a column of {source.qualified_table}")
    else:
        if types[source.key] not in _ACCEPTED_TYPES[source.key_type]:
            problems.append(f"key column {source.key!r} is {types[source.key]}, not {source.key_type} as key.type says")
        if not (unique_key and unique_key[0]):
            problems.append(f"key column {source.key!r} is not the primary key (or a unique key) of the table")
    for column in source.columns:
        if column.name not in types:
            problems.append(f"column {column.name!r} is not a column of {source.qualified_table}")
        elif types[column.name] not in _ACCEPTED_TYPES[column.type]:
            problems.append(
                f"column {column.name!r} is {types[column.name]} in the table, not {column.type} as the definition says"
            )
    problems += _switch_problems(conn, source)
    if problems:
        raise SourceError(source.path, problems)


def _switch_problems(conn: Connection, source: Source) -> list[str]:
    """A database syncs one table: ids of another table's rows are in its ledger and index."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('source_definition') IS NOT NULL, to_regclass('sync_state') IS NOT NULL")
        migrated = cur.fetchone() or (False, False)
        applied = None
        if migrated[0]:
            cur.execute("SELECT source_table, key_column FROM source_definition")
            applied = cur.fetchone()
        if applied is None:
            if source.is_builtin_products or not migrated[1]:
                return []
            cur.execute("SELECT EXISTS (SELECT 1 FROM sync_state)")
            synced = cur.fetchone()
            if synced and synced[0]:
                return ["this database already synced the products table: give the new source a database of its own"]
            return []
    if (applied[0], applied[1]) != (source.qualified_table, source.key):
        return [
            f"this database syncs {applied[0]} (key {applied[1]}), not {source.qualified_table}:"
            " give the new source a database of its own"
        ]
    return []


def apply(conn: Connection, source: Source) -> dict[str, Any]:
    """Check the definition, then create its capture, view and index (idempotent); say what changed.

    Returns {"source": table, "text_changed": bool, "metadata_changed": bool} against the definition
    applied before (both False the first time): a changed text needs a re-index, changed metadata a
    backfill (docs/own-table.md).
    """
    check(conn, source)
    with conn.cursor() as cur:
        cur.execute("SELECT text_fingerprint, metadata_fingerprint, source_table FROM source_definition")
        before = cur.fetchone()
        if not source.is_builtin_products:
            first = before is None or before[2] != source.qualified_table
            cur.execute(_byo_capture_sql(source, first=first))
        else:
            cur.execute(_products_stamp_sql(source))
        cur.execute(_views_sql(source))
        cur.execute(
            "INSERT INTO source_definition"
            " (id, source_table, key_column, text_fingerprint, metadata_fingerprint, definition)"
            " VALUES (1, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
            " text_fingerprint = EXCLUDED.text_fingerprint, metadata_fingerprint = EXCLUDED.metadata_fingerprint,"
            " definition = EXCLUDED.definition, applied_at = now()",
            (
                source.qualified_table,
                source.key,
                source.fingerprint("text"),
                source.fingerprint("metadata"),
                json.dumps(_as_json(source)),
            ),
        )
        # Generations made before sources were made from this text (the first definition applied).
        cur.execute(
            "UPDATE index_generations SET source_text = %s WHERE source_text IS NULL", (source.fingerprint("text"),)
        )
        metadata_changed = before is not None and before[1] != source.fingerprint("metadata")
        if metadata_changed:
            cur.execute(_metadata_backfill_sql(source))
    changes = {
        "source": source.qualified_table,
        "text_changed": before is not None and before[0] != source.fingerprint("text"),
        "metadata_changed": metadata_changed,
    }
    logger.info("source applied", extra=changes)
    return changes


def _metadata_backfill_sql(source: Source) -> str:
    """Every row gets a new version and an outbox row: the index's metadata must follow the new columns.

    The text is the same, so Emu updates metadata only (no embedding); a large table's backlog goes
    through the bulk lane (the relay's threshold), so live edits keep their lane.
    """
    if source.is_builtin_products:
        # The version trigger would keep an unchanged row's version: off for this one statement (as 0013);
        # the capture trigger records each new version (an outbox row and a NOTIFY).
        return """
ALTER TABLE products DISABLE TRIGGER products_stamp_version;
UPDATE products SET version = version + 1, updated_at = now();
ALTER TABLE products ENABLE TRIGGER products_stamp_version;
"""
    return f"""
WITH bumped AS (
    UPDATE source_keys SET version = version + 1, updated_at = now()
    WHERE source = {_quote(source.qualified_table)} AND present
    RETURNING id, version
)
INSERT INTO sync_outbox (product_id, op, version) SELECT id, 'update', version FROM bumped ORDER BY id;
SELECT pg_notify('refarch_outbox', 'backfill');
"""


def _as_json(source: Source) -> dict[str, Any]:
    data = asdict(source)
    data.pop("path")
    return data


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    # Names are checked against definition.IDENTIFIER; quoted all the same.
    return '"' + name + '"'


def _text_sql(source: Source, alias: str) -> str:
    """The embedding template as a SQL expression over the table's columns (NULL renders as nothing)."""
    parts: list[str] = []
    for literal, name in template_parts(source.embed):
        if literal:
            parts.append(_quote(literal))
        if name is not None:
            parts.append(f"coalesce({alias}.{_ident(name)}::text, '')")
    return "(" + " || ".join(parts) + ")"


def _metadata_sql(source: Source, alias: str) -> str:
    """The metadata columns as one jsonb object; a text column cut to its max_length, so a row written to the
    table directly (past the API's checks) still fits the vector index's metadata limit the definition
    was checked against (refarch.source.definition: PINECONE_METADATA_LIMIT_BYTES)."""

    def value(name: str) -> str:
        column = source.column(name)
        if column.type == "text" and column.max_length is not None:
            return f"left({alias}.{_ident(name)}, {int(column.max_length)})"
        return f"{alias}.{_ident(name)}"

    pairs = ", ".join(f"{_quote(c)}, {value(c)}" for c in source.metadata_columns())
    return f"jsonb_strip_nulls(jsonb_build_object({pairs}))"


def _search_document_sql(source: Source, alias: str) -> str:
    """The weighted full-text document: each lexical column under its weight, in the 'english' configuration."""
    weighted = [
        f"setweight(to_tsvector('english'::regconfig, coalesce({alias}.{_ident(c.name)}, '')), '{c.lexical}')"
        for c in source.columns
        if c.lexical
    ]
    return "(" + " || ".join(weighted) + ")"


def _watched(columns: list[str], row: str) -> str:
    return "(" + ", ".join(f"{row}.{_ident(c)}" for c in columns) + ")"


def search_index_name(source: Source) -> str:
    """The keyword index's name, made from its expression: an unchanged definition finds it built (a
    migrate does not rebuild it), a new `lexical` setting makes another (at most 63 characters)."""
    document = _search_document_sql(source, source.qualified_table)
    return f"refarch_{source.table[:38]}_search_{hashlib.sha256(document.encode()).hexdigest()[:12]}"


def _byo_capture_sql(source: Source, *, first: bool) -> str:
    """The capture triggers, the keyword index and the grants; with `first` (the table was not the source
    before), every row already there gets its id while writes wait (once: later migrates skip it)."""
    table, key, src = source.qualified_table, _ident(source.key), _quote(source.qualified_table)
    changed = [source.key, *source.watched_columns()]
    index = search_index_name(source)
    backfill = f"""
-- Rows already in the table get their ids (the bootstrap loads them); a write waits meanwhile.
LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO source_keys (source, key, version, present)
SELECT {src}, t.{key}::text, 1, true FROM {table} t
ON CONFLICT (source, key) DO UPDATE SET version = source_keys.version + 1, present = true, updated_at = now()
    WHERE NOT source_keys.present;
"""
    return f"""
CREATE OR REPLACE FUNCTION refarch_source_capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    row_id bigint;
    row_version bigint;
    outbox_id bigint;
    change text := lower(TG_OP);
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.{key} IS DISTINCT FROM NEW.{key} THEN
        change := 'insert';  -- a new key: the old one is deleted below, the new one inserted
    END IF;
    IF TG_OP = 'DELETE' OR change <> lower(TG_OP) THEN
        -- A tombstone gets the next version, so it orders after every state of the row.
        UPDATE source_keys SET version = version + 1, present = false, updated_at = now()
        WHERE source = {src} AND key = OLD.{key}::text
        RETURNING id, version INTO row_id, row_version;
        IF row_id IS NOT NULL THEN
            INSERT INTO sync_outbox (product_id, op, version) VALUES (row_id, 'delete', row_version)
            RETURNING id INTO outbox_id;
            PERFORM pg_notify('refarch_outbox', outbox_id::text);
        END IF;
        IF TG_OP = 'DELETE' THEN
            RETURN NULL;
        END IF;
    END IF;
    -- An insert, a watched column changed, or the new key of a changed key. A key seen before
    -- (deleted, or inserted again) continues past every version it had.
    INSERT INTO source_keys AS k (source, key, version, present) VALUES ({src}, NEW.{key}::text, 1, true)
    ON CONFLICT (source, key) DO UPDATE SET version = k.version + 1, present = true, updated_at = now()
    RETURNING id, version INTO row_id, row_version;
    INSERT INTO sync_outbox (product_id, op, version)
    VALUES (row_id, change, row_version)
    RETURNING id INTO outbox_id;
    PERFORM pg_notify('refarch_outbox', outbox_id::text);
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS refarch_capture_insert_delete ON {table};
CREATE TRIGGER refarch_capture_insert_delete AFTER INSERT OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION refarch_source_capture();
-- Only a change to a watched column (embedded or metadata) or to the key is a change to sync.
DROP TRIGGER IF EXISTS refarch_capture_update ON {table};
CREATE TRIGGER refarch_capture_update AFTER UPDATE ON {table}
    FOR EACH ROW WHEN ({_watched(changed, "OLD")} IS DISTINCT FROM {_watched(changed, "NEW")})
    EXECUTE FUNCTION refarch_source_capture();
{backfill if first else ""}
-- The project's own products table is not this deployment's source: its changes are not captured
-- (its ids would be taken for this table's).
ALTER TABLE products DISABLE TRIGGER products_capture_insert_delete;
ALTER TABLE products DISABLE TRIGGER products_capture_update;

-- Keyword search reads the weighted document through an expression index: no column is added. Built
-- only when its expression is new (its name is the expression's hash); the ones it replaces are dropped.
CREATE INDEX IF NOT EXISTS {index} ON {table} USING gin ({_search_document_sql(source, table)});
DO $$
DECLARE
    stale text;
BEGIN
    FOR stale IN
        SELECT indexname FROM pg_indexes
        WHERE schemaname = {_quote(source.schema)} AND tablename = {_quote(source.table)}
          AND indexname LIKE 'refarch\\_%' AND indexname <> {_quote(index)}
          AND indexdef LIKE '% USING gin %'
    LOOP
        EXECUTE format('DROP INDEX %I.%I', {_quote(source.schema)}, stale);
    END LOOP;
END $$;
{_grants(source)}
"""


def _grants(source: Source) -> str:
    """The web role edits the table when the page edits it; every runtime reads rows through the view."""
    edits = any(c.edit for c in source.columns)
    grant = "SELECT, INSERT, UPDATE, DELETE" if edits else "SELECT"
    return f"GRANT {grant} ON {source.qualified_table} TO refarch_web;"


def _products_stamp_sql(source: Source) -> str:
    """The products version trigger (0012) with the definition's watched columns."""
    watched = source.watched_columns()
    return f"""
ALTER TABLE products ENABLE TRIGGER products_capture_insert_delete;
ALTER TABLE products ENABLE TRIGGER products_capture_update;

CREATE OR REPLACE FUNCTION products_stamp_version() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM 1 FROM products WHERE id = NEW.id FOR UPDATE;
        NEW.version := 1 + greatest(
            coalesce((SELECT d.last_version FROM deleted_product_versions d WHERE d.product_id = NEW.id), 0),
            coalesce((
                SELECT max(s.indexed_version) FROM sync_state s
                WHERE s.generation IN (SELECT id FROM index_generations) AND s.product_id = NEW.id
            ), 0)
        );
        NEW.created_at := now();
        NEW.updated_at := now();
    ELSIF {_watched(watched, "NEW")} IS NOT DISTINCT FROM {_watched(watched, "OLD")} THEN
        -- Nothing that is embedded or stored as vector metadata changed: not a change.
        NEW.version := OLD.version;
        NEW.created_at := OLD.created_at;
        NEW.updated_at := OLD.updated_at;
    ELSE
        NEW.version := OLD.version + 1;
        NEW.created_at := OLD.created_at;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$;
"""


def _views_sql(source: Source) -> str:
    if source.is_builtin_products:
        rows = f"""
SELECT p.id, p.version, p.updated_at, p.id::text AS key,
       {_text_sql(source, "p")} AS embedding_text,
       {_metadata_sql(source, "p")} AS metadata,
       p.search_document
FROM products p"""
    else:
        cast = _KEY_CAST[source.key_type]
        rows = f"""
SELECT k.id, k.version, k.updated_at, k.key,
       {_text_sql(source, "t")} AS embedding_text,
       {_metadata_sql(source, "t")} AS metadata,
       {_search_document_sql(source, "t")} AS search_document
FROM source_keys k JOIN {source.qualified_table} t ON t.{_ident(source.key)} = k.key::{cast}
WHERE k.source = {_quote(source.qualified_table)}"""
    columns = "".join(f", t.{_ident(c.name)}" for c in source.columns)
    if source.is_builtin_products:
        records = f"SELECT t.id, t.id::text AS key, t.version{columns}, t.search_document FROM products t"
    else:
        records = f"""SELECT k.id, k.key, k.version{columns}, {_search_document_sql(source, "t")} AS search_document
FROM source_keys k JOIN {source.qualified_table} t ON t.{_ident(source.key)} = k.key::{_KEY_CAST[source.key_type]}
WHERE k.source = {_quote(source.qualified_table)}"""
    return f"""
DROP VIEW IF EXISTS product_sync_status;
DROP VIEW IF EXISTS source_rows;
DROP VIEW IF EXISTS source_records;
CREATE VIEW source_rows AS {rows};

-- A row as people see it (the page, the API, search results): its id, key and version, every column
-- the definition names, and its keyword document (keyword search filters on those columns).
CREATE VIEW source_records AS {records};
GRANT SELECT ON source_records TO refarch_web, refarch_pelican;

-- What a person sees per row: 'pending' whenever the row is newer than what is indexed (as 0012).
CREATE VIEW product_sync_status AS
SELECT p.id AS product_id,
       p.version,
       s.indexed_version,
       CASE
           WHEN s.status = 'failed' THEN 'failed'
           WHEN s.product_id IS NULL OR s.status = 'deleted' OR s.indexed_version < p.version THEN 'pending'
           ELSE 'indexed'
       END AS status,
       CASE WHEN s.status = 'failed' THEN s.last_error END AS last_error,
       s.attempts,
       s.indexed_at
FROM source_rows p
LEFT JOIN sync_state s ON s.product_id = p.id AND s.generation = active_generation();

GRANT SELECT ON source_rows, product_sync_status TO refarch_web, refarch_pelican;
GRANT SELECT ON source_rows TO refarch_emu;
"""
