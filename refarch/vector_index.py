"""The VectorIndex port and its two adapters: pgvector (same Postgres) and Pinecone (SDK v10)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import psycopg2.extras
from pgvector import Vector
from pgvector.psycopg2 import register_vector

from refarch.db import Database, fetch_one
from refarch.db.roles import vector_table_grants
from refarch.id_shards import Shard
from refarch.settings import ConfigurationError, Settings

# product_vectors (generation 1) or product_vectors_g<n>: the only names placed in SQL text.
VECTOR_TABLE_NAME = re.compile(r"product_vectors(_g[0-9]{1,9})?")


class DimensionMismatchError(ConfigurationError):
    """The index was built for vectors of another size than the embedder produces."""


@dataclass(frozen=True)
class VectorRecord:
    """A vector with its metadata; `id` is the Postgres product id."""

    id: int
    values: list[float]
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Match:
    """One query result: product id, cosine similarity, stored metadata."""

    id: int
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchFilter:
    """Metadata filters every index supports."""

    category: str | None = None
    min_price: float | None = None
    max_price: float | None = None

    def is_empty(self) -> bool:
        """True when nothing is filtered."""
        return self.category is None and self.min_price is None and self.max_price is None

    def sql_conditions(self) -> tuple[list[str], list[object]]:
        """The filters as SQL conditions on `category` and `price` columns, with their parameters.

        The one translation to SQL, shared by pgvector, full-text search and the product listing.
        Prices go in as exact decimals, so 19.99 compares equal to the numeric column's 19.99.
        """
        conditions: list[str] = []
        params: list[object] = []
        if self.category is not None:
            conditions.append("category = %s")
            params.append(self.category)
        if self.min_price is not None:
            conditions.append("price >= %s")
            params.append(Decimal(str(self.min_price)))
        if self.max_price is not None:
            conditions.append("price <= %s")
            params.append(Decimal(str(self.max_price)))
        return conditions, params


class VectorIndex(Protocol):
    """Where vectors live. Every method is idempotent."""

    dimension: int

    def upsert(self, records: list[VectorRecord]) -> None:
        """Insert or replace vectors with their metadata."""

    def update_metadata(self, updates: dict[int, dict[str, Any]]) -> None:
        """Replace metadata of existing vectors without touching the vectors."""

    def delete(self, ids: list[int]) -> None:
        """Remove vectors (absent ids are fine)."""

    def query(self, vector: list[float], *, top_k: int, filter: SearchFilter | None = None) -> list[Match]:
        """The top_k nearest vectors (cosine), best first."""
        ...

    def count(self) -> int:
        """How many vectors the index holds."""
        ...

    def scan(self, prefix: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
        """Every (id, metadata) in the index whose decimal id starts with `prefix`, for reconciliation."""
        ...

    def fetch_metadata(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """The metadata of these ids (absent ids are left out)."""
        ...

    def fetch_vectors(self, ids: list[int]) -> dict[int, list[float]]:
        """The stored vectors of these ids (absent ids are left out), to check them against a re-embedding."""
        ...

    def drop(self) -> None:
        """Remove every vector and the place that held them (a dropped index generation)."""


class PgVectorIndex:
    """Vectors in a table of the same Postgres (`product_vectors`, one per index generation), HNSW cosine index."""

    def __init__(self, db: Database, dimension: int, table: str = "product_vectors") -> None:
        if not VECTOR_TABLE_NAME.fullmatch(table):
            raise ConfigurationError(f"pgvector table name {table!r} must match {VECTOR_TABLE_NAME.pattern}")
        # Its own connections (Emu holds per-product locks in a transaction on `db` meanwhile), each
        # with pgvector's adapter: vectors travel as pgvector.Vector both ways.
        self.db = Database(db.dsn, application_name="refarch-pgvector", on_connect=_register_vector)
        self.dimension = dimension
        # Validated above: safe to place in SQL text (table names cannot be bind parameters).
        self.table = table

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
                return
            cur.execute(
                f"""CREATE TABLE {self.table} (
                        product_id   bigint PRIMARY KEY,
                        embedding    vector({int(self.dimension)}) NOT NULL,
                        sku          text NOT NULL,
                        name         text NOT NULL,
                        category     text NOT NULL,
                        price        double precision NOT NULL,
                        version      bigint NOT NULL,
                        content_hash text NOT NULL,
                        updated_at   timestamptz NOT NULL DEFAULT now())"""
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
        rows = [
            (
                r.id,
                Vector(r.values),
                r.metadata["sku"],
                r.metadata["name"],
                r.metadata["category"],
                r.metadata["price"],
                r.metadata["version"],
                r.metadata["content_hash"],
            )
            for r in records
        ]
        with self.db.transaction() as conn, conn.cursor() as cur:
            psycopg2.extras.execute_values(
                cur,
                f"INSERT INTO {self.table} (product_id, embedding, sku, name, category, price, version, content_hash)"
                " VALUES %s ON CONFLICT (product_id) DO UPDATE SET embedding = EXCLUDED.embedding,"
                " sku = EXCLUDED.sku, name = EXCLUDED.name, category = EXCLUDED.category,"
                " price = EXCLUDED.price, version = EXCLUDED.version, content_hash = EXCLUDED.content_hash,"
                " updated_at = now()",
                rows,
                template="(%s, %s, %s, %s, %s, %s, %s, %s)",
            )

    def update_metadata(self, updates: dict[int, dict[str, Any]]) -> None:
        """Replace metadata columns."""
        if not updates:
            return
        rows = [
            (pid, m["sku"], m["name"], m["category"], m["price"], m["version"], m["content_hash"])
            for pid, m in updates.items()
        ]
        with self.db.transaction() as conn, conn.cursor() as cur:
            psycopg2.extras.execute_values(
                cur,
                f"UPDATE {self.table} v SET sku = u.sku, name = u.name, category = u.category,"
                " price = u.price, version = u.version, content_hash = u.content_hash, updated_at = now()"
                " FROM (VALUES %s) AS u (product_id, sku, name, category, price, version, content_hash)"
                " WHERE v.product_id = u.product_id",
                rows,
                template="(%s::bigint, %s, %s, %s, %s::double precision, %s::bigint, %s)",
            )

    def delete(self, ids: list[int]) -> None:
        """Remove vectors."""
        if ids:
            with self.db.transaction() as conn, conn.cursor() as cur:
                cur.execute(f"DELETE FROM {self.table} WHERE product_id = ANY(%s)", (list(ids),))

    def query(self, vector: list[float], *, top_k: int, filter: SearchFilter | None = None) -> list[Match]:
        """Nearest neighbours by cosine distance."""
        clauses, params = (filter or SearchFilter()).sql_conditions()
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        literal = Vector(vector)
        with self.db.transaction() as conn, conn.cursor() as cur:
            if clauses:
                # pgvector 0.6 filters after the HNSW scan, which can return too few rows; a filtered
                # query is exact instead (the filter already narrows the rows to rank).
                cur.execute("SET LOCAL enable_indexscan = off")
            else:
                # HNSW returns at most ef_search rows: widen it for deep pages.
                cur.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(min(max(40, top_k), 1000)),))
            cur.execute(
                "SELECT product_id, 1 - (embedding <=> %s::vector) AS score, sku, name, category, price, version,"
                f" content_hash FROM {self.table} {where} ORDER BY embedding <=> %s::vector LIMIT %s",
                [literal, *params, literal, top_k],
            )
            return [
                Match(
                    id=r[0],
                    score=float(r[1]),
                    metadata={
                        "sku": r[2],
                        "name": r[3],
                        "category": r[4],
                        "price": r[5],
                        "version": r[6],
                        "content_hash": r[7],
                    },
                )
                for r in cur.fetchall()
            ]

    def count(self) -> int:
        """Number of vectors."""
        with self.db.transaction() as conn, conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {self.table}")
            return int(fetch_one(cur)[0])

    @property
    def _metadata_query(self) -> str:
        return f"SELECT product_id, sku, name, category, price, version, content_hash FROM {self.table}"

    def scan(self, prefix: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
        """Ids (with this decimal prefix) and their metadata, as Pinecone stores it; a prefix is a few id ranges."""
        ranges = Shard(prefix=prefix).ranges()
        where = " OR ".join(["product_id BETWEEN %s AND %s"] * len(ranges))
        with self.db.transaction() as conn, conn.cursor() as cur:
            bounds = [b for pair in ranges for b in pair]
            cur.execute(f"{self._metadata_query} WHERE {where} ORDER BY product_id", bounds)
            rows = cur.fetchall()
        for row in rows:
            yield row[0], _metadata(row)

    def fetch_metadata(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """Metadata by id."""
        with self.db.transaction() as conn, conn.cursor() as cur:
            cur.execute(f"{self._metadata_query} WHERE product_id = ANY(%s)", (list(ids),))
            return {row[0]: _metadata(row) for row in cur.fetchall()}

    def fetch_vectors(self, ids: list[int]) -> dict[int, list[float]]:
        """Stored vectors by id."""
        with self.db.transaction() as conn, conn.cursor() as cur:
            cur.execute(f"SELECT product_id, embedding FROM {self.table} WHERE product_id = ANY(%s)", (list(ids),))
            return {pid: vector.to_list() for pid, vector in cur.fetchall()}


class PineconeIndex:
    """A Pinecone serverless index through the `pinecone` SDK v10 (a custom host works with Pinecone Local)."""

    # Pinecone caps an upsert at 2 MB and 1000 vectors, and recommends batches of <= 100. The SDK
    # sends JSON: a 1536-d float vector is ~30 KB of it, so 100 of them would be ~3 MB. Batches are
    # cut at 100 vectors or at this many bytes of JSON, whichever comes first (~55 at 1536-d).
    UPSERT_BATCH = 100
    MAX_REQUEST_BYTES = 1_900_000
    DELETE_BATCH = 1000

    def __init__(
        self,
        *,
        api_key: str,
        dimension: int,
        index_name: str | None = None,
        host: str | None = None,
        namespace: str = "products",
    ) -> None:
        from pinecone import Pinecone

        if host:
            target = {"host": host}
        elif index_name:
            target = {"name": index_name}
        else:
            raise ConfigurationError("Pinecone chosen but neither PINECONE_INDEX_NAME nor PINECONE_HOST is set")
        self._pc = Pinecone(api_key=api_key)
        self.index_name = index_name
        self._index = self._pc.Index(**target)
        self.namespace = namespace
        self.dimension = dimension

    def ensure(self) -> None:
        """Check the index dimension against the embedder's."""
        stats = self._index.describe_index_stats()
        existing = int(stats.dimension) if stats.dimension else None
        if existing is not None and existing != self.dimension:
            raise DimensionMismatchError(
                f"Pinecone index {self.index_name or self._index.host} has dimension {existing} but the embedder "
                f"produces {self.dimension}-d vectors: create a new index or change the embedder"
            )

    def drop(self) -> None:
        """Delete every vector of this namespace (a retired generation past its grace period)."""
        self._index.delete(delete_all=True, namespace=self.namespace)

    def upsert(self, records: list[VectorRecord]) -> None:
        """Upsert in request-sized batches (<= UPSERT_BATCH vectors and <= MAX_REQUEST_BYTES each)."""
        for batch in upsert_batches(
            [{"id": str(r.id), "values": r.values, "metadata": r.metadata} for r in records],
            max_vectors=self.UPSERT_BATCH,
            max_bytes=self.MAX_REQUEST_BYTES,
        ):
            self._index.upsert(vectors=batch, namespace=self.namespace)

    def update_metadata(self, updates: dict[int, dict[str, Any]]) -> None:
        """Pinecone updates metadata one vector per call."""
        for pid, metadata in updates.items():
            self._index.update(id=str(pid), set_metadata=metadata, namespace=self.namespace)

    def delete(self, ids: list[int]) -> None:
        """Delete by id."""
        for start in range(0, len(ids), self.DELETE_BATCH):
            self._index.delete(ids=[str(i) for i in ids[start : start + self.DELETE_BATCH]], namespace=self.namespace)

    def query(self, vector: list[float], *, top_k: int, filter: SearchFilter | None = None) -> list[Match]:
        """Top-k with a Pinecone metadata filter."""
        pinecone_filter: dict[str, Any] = {}
        if filter and filter.category is not None:
            pinecone_filter["category"] = {"$eq": filter.category}
        price: dict[str, float] = {}
        if filter and filter.min_price is not None:
            price["$gte"] = filter.min_price
        if filter and filter.max_price is not None:
            price["$lte"] = filter.max_price
        if price:
            pinecone_filter["price"] = price
        result = self._index.query(
            vector=vector,
            top_k=top_k,
            namespace=self.namespace,
            include_metadata=True,
            filter=pinecone_filter or None,
        )
        return [Match(id=int(m.id), score=float(m.score), metadata=dict(m.metadata or {})) for m in result.matches]

    def count(self) -> int:
        """Vectors in our namespace."""
        stats = self._index.describe_index_stats()
        ns = (stats.namespaces or {}).get(self.namespace)
        return int(ns.vector_count) if ns else 0

    def scan(self, prefix: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
        """List ids (by prefix) page by page, fetching their metadata."""
        # SDK v10 yields one ListResponse per page; its items carry only an id.
        pages = (
            self._index.list(prefix=prefix, namespace=self.namespace)
            if prefix
            else self._index.list(namespace=self.namespace)
        )
        for page in pages:
            ids = [item.id for item in page.vectors if item.id]
            fetched = self._index.fetch(ids=ids, namespace=self.namespace)
            for vid, vec in fetched.vectors.items():
                yield int(vid), dict(vec.metadata or {})

    def fetch_metadata(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """Metadata by id (fetched 100 at a time)."""
        found: dict[int, dict[str, Any]] = {}
        for start in range(0, len(ids), self.UPSERT_BATCH):
            chunk = [str(i) for i in ids[start : start + self.UPSERT_BATCH]]
            fetched = self._index.fetch(ids=chunk, namespace=self.namespace)
            found.update({int(vid): dict(vec.metadata or {}) for vid, vec in fetched.vectors.items()})
        return found

    def fetch_vectors(self, ids: list[int]) -> dict[int, list[float]]:
        """Stored vectors by id (fetched 100 at a time)."""
        found: dict[int, list[float]] = {}
        for start in range(0, len(ids), self.UPSERT_BATCH):
            chunk = [str(i) for i in ids[start : start + self.UPSERT_BATCH]]
            fetched = self._index.fetch(ids=chunk, namespace=self.namespace)
            found.update({int(vid): list(vec.values) for vid, vec in fetched.vectors.items()})
        return found


def _metadata(row: tuple[Any, ...]) -> dict[str, Any]:
    pid, sku, name, category, price, version, content_hash = row
    return {
        "product_id": pid,
        "sku": sku,
        "name": name,
        "category": category,
        "price": price,
        "version": version,
        "content_hash": content_hash,
    }


def upsert_batches(vectors: list[dict[str, Any]], *, max_vectors: int, max_bytes: int) -> list[list[dict[str, Any]]]:
    """Split upsert payloads into consecutive batches within a vector count and a JSON size."""
    batches: list[list[dict[str, Any]]] = []
    size = 0
    for vector in vectors:
        cost = len(json.dumps(vector)) + 2  # the separator, and some slack for the SDK's own encoding
        if not batches or len(batches[-1]) >= max_vectors or size + cost > max_bytes:
            batches.append([])
            size = 0
        batches[-1].append(vector)
        size += cost
    return batches


def _register_vector(conn: Any) -> None:
    """pgvector's psycopg2 adapter on a new connection, once the extension exists (ensure() creates it)."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regtype('vector') IS NOT NULL")
        (exists,) = fetch_one(cur)
    if exists:
        register_vector(conn)


def pinecone_api_key(settings: Settings) -> str:
    """The Pinecone API key: PINECONE_API_KEY, else the secret REFARCH_PINECONE_SECRET_ARN names."""
    from refarch.secrets import API_KEY_FIELDS, from_env_or_secret

    key = from_env_or_secret(
        settings.pinecone_api_key,
        settings.pinecone_secret_arn,
        settings.aws_region,
        what="Pinecone API key",
        fields=API_KEY_FIELDS,
    )
    if not key:
        raise ConfigurationError("Pinecone chosen but no PINECONE_API_KEY or REFARCH_PINECONE_SECRET_ARN set")
    return key


def make_index(
    settings: Settings, db: Database, dimension: int, *, target: dict[str, Any] | None = None, ensure: bool = True
) -> PgVectorIndex | PineconeIndex:
    """The index the settings choose (or a generation's recorded target), checked against the embedder's dimension.

    A target is a pgvector table ({"table": ...}) or a Pinecone index and namespace
    ({"index_name", "host", "namespace"}); credentials always come from the settings. `ensure`
    creates a missing table and checks the dimension (off only to drop an index).
    """
    index: PgVectorIndex | PineconeIndex
    pinecone = settings.vector_backend_kind == "pinecone" if target is None else "table" not in target
    if pinecone:
        key = pinecone_api_key(settings)
        where = target or {
            "index_name": settings.pinecone_index_name,
            "host": settings.pinecone_host,
            "namespace": settings.pinecone_namespace,
        }
        index = PineconeIndex(
            api_key=key,
            dimension=dimension,
            index_name=where.get("index_name"),
            host=where.get("host"),
            namespace=where["namespace"],
        )
    else:
        index = PgVectorIndex(db, dimension, (target or {}).get("table", "product_vectors"))
    if ensure:
        index.ensure()
    return index
