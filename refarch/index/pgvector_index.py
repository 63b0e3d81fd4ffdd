"""PgVectorIndex: the VectorIndex adapter for a pgvector table in the same Postgres (one table per index generation)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import psycopg2.extras
from pgvector import Vector
from pgvector.psycopg2 import register_vector

from refarch.db import Database, fetch_one
from refarch.db.roles import vector_table_grants
from refarch.index.id_shards import Shard
from refarch.index.port import CHUNK_KEYS, DimensionMismatchError, Match, SearchFilter, StoredChunk, VectorRecord
from refarch.settings import ConfigurationError

# product_vectors (generation 1) or product_vectors_g<n>: the only names placed in SQL text.
VECTOR_TABLE_NAME = re.compile(r"product_vectors(_g[0-9]{1,9})?")


class PgVectorIndex:
    """Vectors in a table of the same Postgres (`product_vectors`, one per index generation), HNSW cosine index."""

    def __init__(
        self,
        db: Database,
        dimension: int,
        table: str = "product_vectors",
        *,
        query_timeout_seconds: float | None = None,
    ) -> None:
        if not VECTOR_TABLE_NAME.fullmatch(table):
            raise ConfigurationError(f"pgvector table name {table!r} must match {VECTOR_TABLE_NAME.pattern}")
        # Its own connections (Emu holds per-product locks in a transaction on `db` meanwhile), each
        # with pgvector's adapter: vectors travel as pgvector.Vector both ways.
        self.db = Database(db.dsn, application_name="refarch-pgvector", on_connect=_register_vector)
        self.dimension = dimension
        # Validated above: safe to place in SQL text (table names cannot be bind parameters).
        self.table = table
        # A statement_timeout on `query` (search's budget: a slow scan is cancelled and search answers
        # lexically); None leaves the database's own.
        self.query_timeout_seconds = query_timeout_seconds

    def ensure(self) -> None:
        """Create the table and HNSW index if missing; refuse an existing table of another dimension."""
        with self.db.transaction() as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(29285, 2)")
            cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            # A vector column's type modifier is its dimension.
            cur.execute(
                "SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'embedding'",
                (self.table,),
            )
            row = cur.fetchone()
            if row is not None:
                existing = int(row[0])
                if existing != self.dimension:
                    raise DimensionMismatchError(
                        f"pgvector table {self.table} holds {existing}-d vectors but the embedder "
                        f"produces {self.dimension}-d vectors: configure the embedder it was built with, "
                        "and change models with `refarch reindex` (docs/reindex.md)"
                    )
                _upgrade_layout(cur, self.table)
                return
            cur.execute(
                f"""CREATE TABLE {self.table} (
                        product_id   bigint NOT NULL,
                        chunk        integer NOT NULL DEFAULT 0,
                        embedding    vector({int(self.dimension)}) NOT NULL,
                        sku          text,
                        name         text,
                        category     text,
                        price        double precision,
                        version      bigint NOT NULL,
                        content_hash text NOT NULL,
                        metadata     jsonb,
                        chunk_meta   jsonb,
                        updated_at   timestamptz NOT NULL DEFAULT now(),
                        PRIMARY KEY (product_id, chunk))"""
            )
            cur.execute(f"CREATE INDEX {self.table}_hnsw ON {self.table} USING hnsw (embedding vector_cosine_ops)")
            cur.execute(f"CREATE INDEX {self.table}_category ON {self.table} (category)")
            cur.execute(vector_table_grants(self.table))

    def drop(self) -> None:
        """Drop the table (a retired generation past its grace period)."""
        with self.db.transaction() as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {self.table}")

    def upsert(self, records: list[VectorRecord]) -> None:
        """Insert or replace vectors."""
        if not records:
            return
        rows = [(r.id, r.chunk, Vector(r.values), *_columns(r.metadata), _chunk_meta(r.metadata)) for r in records]
        with self.db.transaction() as conn, conn.cursor() as cur:
            psycopg2.extras.execute_values(
                cur,
                f"INSERT INTO {self.table}"
                " (product_id, chunk, embedding, sku, name, category, price, version, content_hash, metadata,"
                " chunk_meta) VALUES %s ON CONFLICT (product_id, chunk) DO UPDATE SET embedding = EXCLUDED.embedding,"
                " sku = EXCLUDED.sku, name = EXCLUDED.name, category = EXCLUDED.category,"
                " price = EXCLUDED.price, version = EXCLUDED.version, content_hash = EXCLUDED.content_hash,"
                " metadata = EXCLUDED.metadata, chunk_meta = EXCLUDED.chunk_meta, updated_at = now()",
                rows,
                template="(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            )

    def update_metadata(self, updates: dict[int, dict[str, Any]]) -> None:
        """Replace metadata columns on every chunk of each row (each chunk keeps its own `chunk_meta`)."""
        if not updates:
            return
        rows = [(pid, *_columns(m)) for pid, m in updates.items()]
        with self.db.transaction() as conn, conn.cursor() as cur:
            psycopg2.extras.execute_values(
                cur,
                f"UPDATE {self.table} v SET sku = u.sku, name = u.name, category = u.category,"
                " price = u.price, version = u.version, content_hash = u.content_hash, metadata = u.metadata,"
                " updated_at = now()"
                " FROM (VALUES %s) AS u (product_id, sku, name, category, price, version, content_hash, metadata)"
                " WHERE v.product_id = u.product_id",
                rows,
                template="(%s::bigint, %s, %s, %s, %s::double precision, %s::bigint, %s, %s::jsonb)",
            )

    def delete(self, ids: list[int]) -> None:
        """Remove every chunk of these rows."""
        if ids:
            with self.db.transaction() as conn, conn.cursor() as cur:
                cur.execute(f"DELETE FROM {self.table} WHERE product_id = ANY(%s)", (list(ids),))

    def delete_chunks_from(self, first_unused: dict[int, int]) -> None:
        """Remove each row's chunks numbered from the given one on."""
        if first_unused:
            with self.db.transaction() as conn, conn.cursor() as cur:
                cur.execute(
                    f"DELETE FROM {self.table} v USING unnest(%s::bigint[], %s::int[]) AS u (product_id, first_unused)"
                    " WHERE v.product_id = u.product_id AND v.chunk >= u.first_unused",
                    (list(first_unused), list(first_unused.values())),
                )

    def fetch_chunks(self, keys: list[tuple[int, int]]) -> dict[tuple[int, int], StoredChunk]:
        """Stored chunks by (row id, chunk)."""
        if not keys:
            return {}
        with self.db.transaction() as conn, conn.cursor() as cur:
            cur.execute(
                f"SELECT product_id, chunk, embedding, {_METADATA_COLUMNS} FROM {self.table}"
                " WHERE (product_id, chunk) IN (SELECT * FROM unnest(%s::bigint[], %s::int[]))",
                ([k[0] for k in keys], [k[1] for k in keys]),
            )
            return {(r[0], r[1]): StoredChunk(r[2].to_list(), _metadata(r[3:])) for r in cur.fetchall()}

    def query(self, vector: list[float], *, top_k: int, filter: SearchFilter | None = None) -> list[Match]:
        """Nearest neighbours by cosine distance."""
        wanted = filter or SearchFilter()
        # The products' filters on their own columns; any other filter column on the metadata (jsonb).
        clauses, params = replace(wanted, fields=()).sql_conditions()
        if wanted.fields:
            clauses.append("metadata @> %s::jsonb")
            params.append(json.dumps(wanted.metadata_equals()))
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        literal = Vector(vector)
        with self.db.transaction() as conn, conn.cursor() as cur:
            if self.query_timeout_seconds is not None:
                milliseconds = max(1, round(self.query_timeout_seconds * 1000))
                cur.execute("SELECT set_config('statement_timeout', %s, true)", (f"{milliseconds}ms",))
            if clauses:
                # pgvector 0.6 filters after the HNSW scan, which can return too few rows; a filtered
                # query is exact instead (the filter already narrows the rows to rank).
                cur.execute("SET LOCAL enable_indexscan = off")
            else:
                # HNSW returns at most ef_search rows: widen it for deep pages.
                cur.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(min(max(40, top_k), 1000)),))
            cur.execute(
                f"SELECT 1 - (embedding <=> %s::vector) AS score, chunk, {_METADATA_COLUMNS}"
                f" FROM {self.table} {where} ORDER BY embedding <=> %s::vector LIMIT %s",
                [literal, *params, literal, top_k],
            )
            matches = [Match(id=r[2], score=float(r[0]), metadata=_metadata(r[2:]), chunk=r[1]) for r in cur.fetchall()]
        for match in matches:
            del match.metadata["product_id"]  # the match's id; metadata is the rest
        return matches

    def count(self) -> int:
        """Number of vectors."""
        with self.db.transaction() as conn, conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {self.table}")
            return int(fetch_one(cur)[0])

    @property
    def _metadata_query(self) -> str:
        return f"SELECT {_METADATA_COLUMNS} FROM {self.table}"

    def scan(self, prefix: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
        """Row ids (with this decimal prefix) and each chunk's metadata, as Pinecone stores it; a prefix is a
        few id ranges."""
        ranges = Shard(prefix=prefix).ranges()
        where = " OR ".join(["product_id BETWEEN %s AND %s"] * len(ranges))
        with self.db.transaction() as conn, conn.cursor() as cur:
            bounds = [b for pair in ranges for b in pair]
            cur.execute(f"{self._metadata_query} WHERE {where} ORDER BY product_id, chunk", bounds)
            rows = cur.fetchall()
        for row in rows:
            yield row[0], _metadata(row)

    def fetch_metadata(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """Metadata of each row's first chunk."""
        with self.db.transaction() as conn, conn.cursor() as cur:
            cur.execute(f"{self._metadata_query} WHERE product_id = ANY(%s) AND chunk = 0", (list(ids),))
            return {row[0]: _metadata(row) for row in cur.fetchall()}

    def fetch_vectors(self, ids: list[int]) -> dict[int, list[float]]:
        """Stored vectors of each row's first chunk."""
        with self.db.transaction() as conn, conn.cursor() as cur:
            cur.execute(
                f"SELECT product_id, embedding FROM {self.table} WHERE product_id = ANY(%s) AND chunk = 0", (list(ids),)
            )
            return {pid: vector.to_list() for pid, vector in cur.fetchall()}


# The products' metadata columns: a source's metadata is also kept whole in `metadata` (jsonb); these
# columns are what search filters on (SearchFilter), NULL for a source without them.
_PRODUCT_COLUMNS = ("sku", "name", "category", "price")
# Kept in columns of their own, never inside `metadata`; a chunk's own keys are in `chunk_meta`.
_OWN_COLUMNS = ("product_id", "version", "content_hash", *CHUNK_KEYS)
# What `_metadata` reads, in its order.
_METADATA_COLUMNS = "product_id, sku, name, category, price, version, content_hash, metadata, chunk_meta"


def _chunk_meta(metadata: dict[str, Any]) -> psycopg2.extras.Json | None:
    """A chunk's own keys (its number, place, hash) when the row has several chunks, else None."""
    own = {k: metadata[k] for k in CHUNK_KEYS if k in metadata}
    return psycopg2.extras.Json(own) if own else None


def _columns(metadata: dict[str, Any]) -> tuple[Any, ...]:
    """(sku, name, category, price, version, content_hash, metadata) of one vector's metadata."""
    kept = {k: v for k, v in metadata.items() if k not in _OWN_COLUMNS}
    return (
        *(metadata.get(name) for name in _PRODUCT_COLUMNS),
        metadata["version"],
        metadata["content_hash"],
        psycopg2.extras.Json(kept),
    )


def _metadata(row: tuple[Any, ...]) -> dict[str, Any]:
    """A stored vector's metadata as Pinecone keeps it; a row written before `metadata` existed has only its columns."""
    pid, sku, name, category, price, version, content_hash, metadata, chunk_meta = row
    held = metadata if metadata is not None else {"sku": sku, "name": name, "category": category, "price": price}
    return {"product_id": pid, **held, "version": version, "content_hash": content_hash, **(chunk_meta or {})}


def _upgrade_layout(cur: Any, table: str) -> None:
    """A table made before sources (product columns only): add `metadata` and let the product columns be NULL;
    made before chunks (one vector per row): add `chunk` (0 for every vector there) and key by row and chunk."""
    # `table` was validated against VECTOR_TABLE_NAME by the constructor.
    cur.execute("SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'metadata'", (table,))
    if cur.fetchone() is None:
        cur.execute(
            f"ALTER TABLE {table} ADD COLUMN metadata jsonb, ALTER COLUMN sku DROP NOT NULL,"
            " ALTER COLUMN name DROP NOT NULL, ALTER COLUMN category DROP NOT NULL, ALTER COLUMN price DROP NOT NULL"
        )
    cur.execute("SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'chunk'", (table,))
    if cur.fetchone() is None:
        cur.execute(
            f"ALTER TABLE {table} ADD COLUMN chunk integer NOT NULL DEFAULT 0, ADD COLUMN chunk_meta jsonb,"
            f" DROP CONSTRAINT {table}_pkey, ADD PRIMARY KEY (product_id, chunk)"
        )


def _register_vector(conn: Any) -> None:
    """pgvector's psycopg2 adapter on a new connection, once the extension exists (ensure() creates it)."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regtype('vector') IS NOT NULL")
        (exists,) = fetch_one(cur)
    if exists:
        register_vector(conn)
