"""Wiring shared by Emu's tests: stand-ins, the handler's environment, SQS-shaped events, the invariant."""

from __future__ import annotations

import functools
import itertools
import uuid
from decimal import Decimal
from typing import Any

import psycopg2
import pytest

from refarch import products
from refarch.db import Database
from refarch.embeddings import LocalEmbedder
from refarch.emu import ledger
from refarch.emu.worker import content_hash
from refarch.index.port import VectorIndex, held_rows
from refarch.lanes.messages import BulkSyncMessage, SyncMessage
from refarch.runtime import Runtime
from refarch.source import rows as source_rows
from refarch.source.rows import SourceRow
from refarch_local.event_source import to_lambda_record
from refarch_local.handlers import LocalLambdaContext
from refarch_local.standins import BedrockStandIn, OpenAIStandIn, PineconeStandIn
from refarch_local.supervisor import local_model

# Small vectors keep the stand-ins' JSON light; the size is still checked end to end.
OPENAI_DIMENSIONS = 64
QUEUE_ARN = "arn:aws:sqs:us-east-1:000000000000:refarch-sync.fifo"


@functools.cache
def shared_local_embedder() -> LocalEmbedder:
    """The real all-MiniLM-L6-v2 model, loaded once per test session (loading takes seconds)."""
    return local_model()


def configure_emu(
    monkeypatch: pytest.MonkeyPatch,
    dsn: str,
    *,
    embedder: str,
    index: str,
    openai: OpenAIStandIn | None = None,
    pinecone: PineconeStandIn | None = None,
    bedrock: BedrockStandIn | None = None,
    bedrock_model: str = "amazon.titan-embed-text-v2:0",
    dimensions: int = OPENAI_DIMENSIONS,
    timeout_seconds: float = 1.0,
    max_retries: int = 2,
) -> Runtime:
    """Point `lambdas.emu.handler` at this database, embedder and index through the environment, as on AWS."""
    import lambdas.emu

    monkeypatch.setenv("DATABASE_URL", dsn)
    monkeypatch.setenv("REFARCH_EMBEDDER", embedder)
    monkeypatch.setenv("REFARCH_VECTOR_BACKEND", index)
    if openai is not None:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")
        monkeypatch.setenv("OPENAI_BASE_URL", openai.base_url)
        monkeypatch.setenv("REFARCH_OPENAI_DIMENSIONS", str(dimensions))
        monkeypatch.setenv("REFARCH_OPENAI_TIMEOUT_SECONDS", str(timeout_seconds))
        monkeypatch.setenv("REFARCH_OPENAI_MAX_RETRIES", str(max_retries))
    if bedrock is not None:
        # Any SigV4 signature passes the stand-in; boto3 signs only with some credentials.
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
        monkeypatch.setenv("REFARCH_BEDROCK_ENDPOINT_URL", bedrock.url)
        monkeypatch.setenv("REFARCH_BEDROCK_MODEL", bedrock_model)
        monkeypatch.setenv("REFARCH_BEDROCK_DIMENSIONS", "256" if bedrock_model.startswith("amazon.titan") else "1024")
        monkeypatch.setenv("REFARCH_BEDROCK_TIMEOUT_SECONDS", str(timeout_seconds))
        monkeypatch.setenv("REFARCH_BEDROCK_MAX_ATTEMPTS", str(max_retries + 1))
    if pinecone is not None:
        monkeypatch.setenv("PINECONE_API_KEY", pinecone.api_key)
        monkeypatch.setenv("PINECONE_HOST", pinecone.url)
    runtime = Runtime(application_name="emu")
    if embedder == "local":
        # The same class make_embedder builds, loaded once per session instead of once per test.
        runtime.__dict__["embedder"] = shared_local_embedder()
    monkeypatch.setattr(lambdas.emu, "runtime", runtime)
    return runtime


def start_pinecone(started: list[PineconeStandIn], dimension: int, **kwargs: Any) -> PineconeStandIn:
    """Start a Pinecone stand-in for this test."""
    stand_in = PineconeStandIn(dimension=dimension, **kwargs).start()
    started.append(stand_in)
    return stand_in


_message_ids = itertools.count(1)


def sqs_record(body: str, group_id: str, *, receive_count: int = 1) -> dict[str, Any]:
    """One record exactly as Lambda's SQS event source delivers it."""
    n = next(_message_ids)
    message = {
        "MessageId": str(uuid.uuid4()),
        "ReceiptHandle": f"handle-{n}",
        "Body": body,
        "MD5OfBody": "",
        "Attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": "1700000000000",
            "SenderId": "local",
            "ApproximateFirstReceiveTimestamp": "1700000000000",
            "SequenceNumber": str(10_000 + n),
            "MessageGroupId": group_id,
            "MessageDeduplicationId": f"dedup-{n}",
        },
    }
    return to_lambda_record(message, QUEUE_ARN, "us-east-1")


def sqs_event(*items: SyncMessage | BulkSyncMessage | tuple[str, str]) -> dict[str, Any]:
    """An SQS event: messages (grouped by product; a bulk message has no group) or raw (body, group id) pairs."""
    records = [
        sqs_record(item.model_dump_json(), item.group_id)
        if isinstance(item, SyncMessage)
        else sqs_record(item.model_dump_json(), "bulk")
        if isinstance(item, BulkSyncMessage)
        else sqs_record(*item)
        for item in items
    ]
    return {"Records": records}


def invoke_emu(event: dict[str, Any]) -> dict[str, Any]:
    """Call the Emu handler as Lambda does, with a fresh context."""
    import lambdas.emu

    return lambdas.emu.handler(event, LocalLambdaContext(function_name="emu"))


def failed_ids(response: dict[str, Any]) -> set[str]:
    """Message ids the handler reported as failed."""
    return {f["itemIdentifier"] for f in response["batchItemFailures"]}


def change(product_id: int, version: int = 1, op: str = "update", **extra: Any) -> SyncMessage:
    """A change message, as the outbox relay sends it."""
    return SyncMessage(product_id=product_id, version=version, op=op, source="change", **extra)  # type: ignore[arg-type]


def new_product(dsn: str, n: int, **overrides: Any) -> products.Product:
    """Insert product number n (triggers write the outbox row as for any change)."""
    fields = {
        "sku": f"T-{n:04d}",
        "name": f"Widget {n}",
        "description": f"A sturdy widget, model {n}.",
        "category": "tools",
        "price": Decimal("10.00") + n,
        **overrides,
    }
    conn = psycopg2.connect(dsn)
    try:
        with conn:
            return products.create(conn, fields)
    finally:
        conn.close()


def edit_product(dsn: str, product_id: int, **fields: Any) -> products.Product:
    """Update some fields (the version is bumped by the trigger when something changed)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn:
            return products.update(conn, product_id, fields, expected_version=None)
    finally:
        conn.close()


def delete_product(dsn: str, product_id: int) -> None:
    """Delete a row."""
    conn = psycopg2.connect(dsn)
    try:
        with conn:
            products.delete(conn, product_id)
    finally:
        conn.close()


def query_one(dsn: str, sql: str, params: tuple = ()) -> Any:
    """The first column of the first row."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
            return row[0] if row else None
    finally:
        conn.close()


def embed_calls_recorded(dsn: str) -> int:
    """Provider calls in the cost audit (`embed_calls`)."""
    return int(query_one(dsn, "SELECT count(*) FROM embed_calls"))


def ledger_entries(dsn: str) -> dict[int, ledger.LedgerEntry]:
    """The whole ledger."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT product_id FROM sync_state")
            ids = [r[0] for r in cur.fetchall()]
        with conn:
            return ledger.get_many(conn, ids)
    finally:
        conn.close()


def ledger_errors(dsn: str) -> dict[int, str | None]:
    """last_error per product."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT product_id, last_error FROM sync_state")
            return dict(cur.fetchall())
    finally:
        conn.close()


def all_rows(db: Database) -> dict[int, SourceRow]:
    """Every row of the source table (products, unless the database syncs another), as Emu reads it."""
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM source_rows")
        ids = [r[0] for r in cur.fetchall()]
        return source_rows.get_many(conn, ids)


def assert_index_matches_database(db: Database, index: VectorIndex, model_id: str) -> None:
    """The invariant: the index holds exactly the rows, each at its current version and content hash,
    and the ledger agrees (indexed at the row's version; deleted for every other id it knows)."""
    rows = all_rows(db)
    held = held_rows(index.scan())
    indexed = {pid: row.first for pid, row in held.items()}
    assert sorted(indexed) == sorted(rows), "index ids differ from the table's"
    torn = [pid for pid, row in held.items() if not row.complete]
    assert not torn, f"rows whose chunks are not exactly one text's: {torn[:10]}"
    for pid, row in rows.items():
        assert indexed[pid]["version"] == row.version, f"product {pid}: vector version != row version"
        assert indexed[pid]["content_hash"] == content_hash(model_id, row.embedding_text()), (
            f"product {pid}: vector was embedded from other text than the row's"
        )
    with db.transaction() as conn, conn.cursor() as cur:
        cur.execute("SELECT product_id, indexed_version, status FROM sync_state")
        entries = {pid: (version, status) for pid, version, status in cur.fetchall()}
    for pid, row in rows.items():
        assert entries.get(pid) == (row.version, "indexed"), f"product {pid}: ledger {entries.get(pid)}"
    assert all(status == "deleted" for pid, (_, status) in entries.items() if pid not in rows)
