"""The Emu handler with the Bedrock embedder: the real boto3 client against the Bedrock stand-in.

The representative cases of test_emu_handler.py for a provider with other limits and other errors:
Titan's one text per request (sent concurrently), Cohere's 96-text batches, throttling retried by
botocore (and counted), a refused text found alone, a timeout counted as an attempt.
"""

from __future__ import annotations

import json

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from refarch.observability import metrics
from tests.integration.emu_support import (
    assert_index_matches_database,
    change,
    configure_emu,
    embed_calls_recorded,
    failed_ids,
    invoke_emu,
    ledger_entries,
    ledger_errors,
    new_product,
    query_one,
    sqs_event,
)

pytest_plugins = ["tests.integration.emu_fixtures"]

TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"


@pytest.mark.parametrize(("model", "requests"), [(TITAN, 9), (COHERE, 1)])
def test_a_batch_is_embedded_once_per_row_in_the_models_request_shape(
    monkeypatch, dsn, bedrock_standin, model, requests
):
    # Given nine new products and a batch of their messages (one duplicated)
    emu = configure_emu(
        monkeypatch, dsn, embedder="bedrock", index="pgvector", bedrock=bedrock_standin, bedrock_model=model
    )
    rows = [new_product(dsn, n) for n in range(1, 10)]
    messages = [change(r.id, op="insert") for r in rows]
    # When the handler processes the batch
    response = invoke_emu(sqs_event(*messages, messages[0]))
    # Then nothing failed; Titan got one request per text, Cohere one for all nine; each text embedded once
    assert response == {"batchItemFailures": []}
    assert bedrock_standin.embed_calls == requests
    assert bedrock_standin.texts == 9
    # And the cost audit counts one chunk of nine texts under the Bedrock model's id
    assert embed_calls_recorded(dsn) == 1
    assert query_one(dsn, "SELECT texts FROM embed_calls") == 9
    assert query_one(dsn, "SELECT model FROM embed_calls") == emu.embedder.model_id
    assert emu.embedder.model_id.startswith(f"bedrock:{model}:")
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


def test_cohere_embeds_rows_as_documents_and_queries_as_queries(monkeypatch, dsn, bedrock_standin):
    # Given the Cohere embedder
    emu = configure_emu(
        monkeypatch, dsn, embedder="bedrock", index="pgvector", bedrock=bedrock_standin, bedrock_model=COHERE
    )
    row = new_product(dsn, 1)
    invoke_emu(sqs_event(change(row.id, op="insert")))
    # When search embeds a query
    emu.search.search("sturdy widget", k=3, mode="semantic")
    # Then the row went as search_document and the query as search_query
    kinds = [request.body["input_type"] for route, request in bedrock_standin.received if route == "invoke"]
    assert kinds == ["search_document", "search_query"]


def test_throttling_is_retried_with_backoff_counted_and_nothing_is_embedded_twice(monkeypatch, dsn, bedrock_standin):
    # Given Titan with 4 attempts per request, and Bedrock throttling the next three requests
    emu = configure_emu(monkeypatch, dsn, embedder="bedrock", index="pgvector", bedrock=bedrock_standin, max_retries=3)
    rows = [new_product(dsn, n) for n in range(1, 6)]
    bedrock_standin.fail_next("rate_limit", times=3)
    # When the batch is processed
    response = invoke_emu(sqs_event(*[change(r.id, op="insert") for r in rows]))
    # Then botocore's retries absorbed the throttling: nothing failed, every row embedded once
    assert failed_ids(response) == set()
    assert bedrock_standin.faults["rate_limit"] == 3
    assert emu.embedder.throttled == 3  # type: ignore[attr-defined]
    assert bedrock_standin.texts == len(rows)
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


def emf_records(out: str) -> list[dict]:
    """The CloudWatch embedded-metric-format records printed (Powertools prints them on stdout, as on AWS)."""
    return [json.loads(line) for line in out.splitlines() if '"_aws"' in line]


def test_throttles_are_published_as_the_invocations_embed_throttles_metric(monkeypatch, capsys, dsn, bedrock_standin):
    # Given metrics on (the test session turns them off), Titan with 4 attempts per request, and Bedrock
    # throttling the next two requests
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    metrics.clear_metrics()
    configure_emu(monkeypatch, dsn, embedder="bedrock", index="pgvector", bedrock=bedrock_standin, max_retries=3)
    rows = [new_product(dsn, n) for n in range(1, 5)]
    bedrock_standin.fail_next("rate_limit", times=2)
    capsys.readouterr()
    # When a batch is processed (botocore retries the throttled requests)
    response = invoke_emu(sqs_event(*[change(r.id, op="insert") for r in rows[:2]]))
    # Then nothing failed, and the invocation's metric record counts the two throttles beside its one chunk
    assert failed_ids(response) == set() and bedrock_standin.faults["rate_limit"] == 2
    (record,) = emf_records(capsys.readouterr().out)
    names = {m["Name"] for m in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"EmbedThrottles", "EmbedCalls", "Failed"} <= names
    assert (record["EmbedThrottles"], record["EmbedCalls"], record["Failed"]) == ([2], [1], [0])
    assert record["lane"] == "live"
    # When the next batch meets no throttling, Then it reports none: each throttle is published once
    assert failed_ids(invoke_emu(sqs_event(*[change(r.id, op="insert") for r in rows[2:]]))) == set()
    (record,) = emf_records(capsys.readouterr().out)
    assert record["EmbedThrottles"] == [0] and record["Embedded"] == [2]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_titans_requests_within_a_chunk_overlap_up_to_the_configured_concurrency(
    monkeypatch, dsn, bedrock_standin, concurrency
):
    # Given Titan (one text per request) with `concurrency` requests in flight, and Bedrock answering
    # each of the next eight requests after 0.2 s
    monkeypatch.setenv("REFARCH_BEDROCK_CONCURRENCY", str(concurrency))
    emu = configure_emu(monkeypatch, dsn, embedder="bedrock", index="pgvector", bedrock=bedrock_standin)
    rows = [new_product(dsn, n) for n in range(1, 9)]
    bedrock_standin.delay_next(0.2, times=8)
    # When a batch of eight products is processed
    response = invoke_emu(sqs_event(*[change(r.id, op="insert") for r in rows]))
    # Then it was one chunk of eight single-text requests, and the stand-in saw exactly `concurrency` of them
    # at once (never more: the embedder's pool bounds them)
    assert failed_ids(response) == set()
    assert embed_calls_recorded(dsn) == 1 and bedrock_standin.embed_calls == 8
    assert bedrock_standin.max_in_flight == concurrency
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


def test_throttling_past_the_retries_fails_the_batch_with_the_reason_and_a_redelivery_succeeds(
    monkeypatch, dsn, bedrock_standin
):
    # Given Cohere with 2 attempts per request, and Bedrock throttling both
    emu = configure_emu(
        monkeypatch,
        dsn,
        embedder="bedrock",
        index="pgvector",
        bedrock=bedrock_standin,
        bedrock_model=COHERE,
        max_retries=1,
    )
    rows = [new_product(dsn, n) for n in (1, 2)]
    event = sqs_event(*[change(r.id, op="insert") for r in rows])
    bedrock_standin.fail_next("rate_limit", times=2)
    # When the batch is processed, Then every record failed (the queue redelivers it)
    with pytest.raises(BatchProcessingError, match="All records failed"):
        invoke_emu(event)
    # And the ledger says why: an outage (not split to look for a bad text)
    assert bedrock_standin.embed_calls == 0 and len(bedrock_standin.received) == 2
    for r in rows:
        assert ledger_entries(dsn)[r.id].status == "failed"
        assert "ThrottlingException" in (ledger_errors(dsn)[r.id] or "")
    # When Bedrock has capacity again and the batch is redelivered, Then it is indexed
    assert failed_ids(invoke_emu(event)) == set()
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


def test_a_refused_text_fails_alone_and_its_neighbours_are_indexed(monkeypatch, dsn, bedrock_standin):
    # Given a Cohere chunk of six products, one of whose texts Bedrock refuses (ValidationException)
    configure_emu(monkeypatch, dsn, embedder="bedrock", index="pgvector", bedrock=bedrock_standin, bedrock_model=COHERE)
    rows = [new_product(dsn, n) for n in range(1, 7)]
    bad = new_product(dsn, 7, description="Contains FORBIDDEN words.")
    bedrock_standin.refuse("FORBIDDEN")
    event = sqs_event(*[change(r.id, op="insert") for r in [*rows, bad]])
    # When the batch is processed
    response = invoke_emu(event)
    # Then only the refused product's message fails, with Bedrock's reason; the chunk was split to find it
    assert failed_ids(response) == {event["Records"][-1]["messageId"]}
    assert "ValidationException" in (ledger_errors(dsn)[bad.id] or "")
    assert all(ledger_entries(dsn)[r.id].status == "indexed" for r in rows)
    assert bedrock_standin.texts == len(rows)


def test_a_timeout_counts_an_attempt_and_a_redelivery_succeeds(monkeypatch, dsn, bedrock_standin):
    # Given Titan with a 0.5 s read timeout and no retries, and Bedrock hanging once
    emu = configure_emu(
        monkeypatch,
        dsn,
        embedder="bedrock",
        index="pgvector",
        bedrock=bedrock_standin,
        timeout_seconds=0.5,
        max_retries=0,
    )
    row = new_product(dsn, 1)
    event = sqs_event(change(row.id, op="insert"))
    bedrock_standin.fail_next("timeout")
    # When the message is delivered, Then it fails with the reason and counts an attempt
    with pytest.raises(BatchProcessingError):
        invoke_emu(event)
    assert ledger_entries(dsn)[row.id].attempts == 1
    assert "Timeout" in (ledger_errors(dsn)[row.id] or "")
    # And the redelivery is indexed
    assert failed_ids(invoke_emu(event)) == set()
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)
