"""Dead letters an operator can act on, end to end: poison messages reach the live lane's DLQ through the
real Emu handler and the local SQS server's redrive policy; `refarch dlq list` shows why each failed,
`refarch dlq discard` leaves the product failed with that reason, `refarch dlq redrive` after the fix
indexes it. Real Postgres, the OpenAI stand-in through the real SDK, pgvector."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator

import psycopg2
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from click.testing import CliRunner

import lambdas.emu
from refarch.lanes.queues import SyncQueue, make_sqs_client
from refarch.lanes.topology import DEFAULT_TOPOLOGY
from refarch_local.event_source import EventSourcePoller
from refarch_local.standins import OpenAIStandIn, hashed_embedding
from refarch_local.standins.server import ApiError
from tests.integration.emu_support import (
    assert_index_matches_database,
    configure_emu,
    edit_product,
    ledger_entries,
    ledger_errors,
    new_product,
)
from tests.integration.test_emu_sqs import process_queue, relay_outbox

POISON = "POISON"
MALFORMED_BODY = '{"schema_version": 1, "product_id": "not a number"}'


class RefusingProvider:
    """The OpenAI stand-in's embeddings, except that while `refusing`, a text holding POISON is refused (400)."""

    def __init__(self) -> None:
        self.refusing = True

    def __call__(self, texts: list[str], dimension: int) -> list[list[float]]:
        if self.refusing and any(POISON in t for t in texts):
            raise ApiError(400, "refused: the input violates the usage policy")
        return [hashed_embedding(t, dimension) for t in texts]


@pytest.fixture
def provider() -> Iterator[tuple[OpenAIStandIn, RefusingProvider]]:
    refusing = RefusingProvider()
    with OpenAIStandIn(embed_fn=refusing, seed=7) as stand_in:
        yield stand_in, refusing


def refarch(*args: str) -> str:
    """The real `refarch` command in this process (click's runner), as an operator runs it."""
    from refarch_cli.commands import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def dead_letters(lane: str = "live") -> list[dict]:
    """`refarch dlq list --lane LANE --json`: that lane's messages."""
    [listing] = json.loads(refarch("dlq", "list", "--lane", lane, "--json"))
    assert listing["lane"] == lane and listing["depth"] == len(listing["messages"])
    return listing["messages"]


def test_poison_messages_are_listed_with_their_reasons_discarded_or_redriven_after_the_fix(
    monkeypatch, dsn, local_settings, provider
):
    # Given Emu on the live lane with a provider that refuses any text holding POISON
    stand_in, refusing = provider
    emu = configure_emu(monkeypatch, dsn, embedder="openai", index="pgvector", openai=stand_in, max_retries=0)
    client = make_sqs_client(local_settings)
    queue = SyncQueue.for_lane(client, local_settings, "live")
    poller = EventSourcePoller(client, queue.url, lane=DEFAULT_TOPOLOGY.live)
    # And two poisoned products, a healthy one, and a message nobody can read
    poisoned = [new_product(dsn, n, description=f"A widget that is {POISON} to embed.") for n in (1, 2)]
    healthy = new_product(dsn, 3)
    relay_outbox(dsn, queue)
    client.send_message(
        QueueUrl=queue.url, MessageBody=MALFORMED_BODY, MessageGroupId="junk", MessageDeduplicationId="junk-1"
    )

    # When the event source keeps delivering until the queue is empty (the redrive policy moves the failures)
    deadline = time.monotonic() + 40
    while (depth := queue.depth()) != {"visible": 0, "in_flight": 0}:
        assert time.monotonic() < deadline, f"the poison never left the queue: {depth}"
        # Every record of a delivery failed: Powertools raises, and all of them come back.
        with contextlib.suppress(BatchProcessingError):
            poller.poll_once(lambdas.emu.handler)
        time.sleep(0.2)

    # Then `refarch dlq list` shows the three dead letters, each with its products, receives, age and reason
    listed = {tuple(m["products"]): m for m in dead_letters()}
    assert set(listed) == {(poisoned[0].id,), (poisoned[1].id,), ()}
    for product in poisoned:
        letter = listed[(product.id,)]
        assert letter["reason"].startswith(f"product {product.id}: embed/upsert failed: BadRequestError")
        assert "refused: the input violates the usage policy" in letter["reason"]
        assert letter["receive_count"] >= DEFAULT_TOPOLOGY.max_receive_count and letter["age_seconds"] >= 0
        assert not letter["malformed"]
    junk = listed[()]
    assert junk["malformed"] and "could not read this message" in junk["reason"] and "product_id" in junk["reason"]
    # And the text listing says the same, and listing left every message in the DLQ
    text = refarch("dlq", "list")
    assert "live lane: 3 dead letter(s)" in text and "refused: the input violates the usage policy" in text
    assert len(dead_letters()) == 3
    assert ledger_entries(dsn)[healthy.id].status == "indexed"

    # When the operator discards the second product's message and the unreadable one
    refarch("dlq", "discard", listed[(poisoned[1].id,)]["id"], junk["id"])
    # Then they are gone, and the product stays failed with the reason it was discarded for
    assert [m["products"] for m in dead_letters()] == [[poisoned[0].id]]
    entry, error = ledger_entries(dsn)[poisoned[1].id], ledger_errors(dsn)[poisoned[1].id] or ""
    assert entry.status == "failed"
    assert error.startswith("discarded from the live dead-letter queue: product 2: embed/upsert failed")
    assert "refused: the input violates the usage policy" in error

    # When the cause is fixed and the operator redrives the live lane
    refusing.refusing = False
    assert "1 message(s) sent back to the queue" in refarch("dlq", "redrive", "--lane", "live")
    process_queue(poller, queue)
    # Then the redriven product is indexed and the DLQ is empty
    assert dead_letters() == []
    assert ledger_entries(dsn)[poisoned[0].id].status == "indexed"
    # And once the discarded product changes again, index == database
    edit_product(dsn, poisoned[1].id, description="A widget that embeds fine now.")
    relay_outbox(dsn, queue)
    process_queue(poller, queue)
    assert_index_matches_database(emu.db, emu.index, emu.embedder.model_id)


def test_discarding_an_unknown_id_says_so(local_settings, dsn):
    # Given an empty DLQ, When an id that is not in it is discarded
    from refarch_cli.commands import main

    result = CliRunner().invoke(main, ["dlq", "discard", "no-such-message"])
    # Then the command fails and names it
    assert result.exit_code == 1 and "not in any dead-letter queue: no-such-message" in result.output


def test_the_web_role_may_record_a_discarded_products_failure_and_nothing_else_of_the_ledger(dsn, login_as):
    # Given the web task's database role (the page's dead letters and `refarch dlq` run in the web task)
    from refarch.db import Database
    from refarch.emu import ledger

    product = new_product(dsn, 1)
    web = Database(login_as("web"))
    # When it records a discarded message's product as failed, twice (insert, then update)
    for reason in ("discarded: first", "discarded: second"):
        with web.transaction() as conn:
            ledger.record_failed(conn, {product.id: reason}, generation=1)
    # Then the product is failed with the reason
    entry = ledger_entries(dsn)[product.id]
    assert (entry.status, entry.attempts, ledger_errors(dsn)[product.id]) == ("failed", 2, "discarded: second")
    # And it still cannot write what only Emu writes: an indexed version or a content hash
    for statement in ("UPDATE sync_state SET indexed_version = 99", "UPDATE sync_state SET content_hash = 'x'"):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege), web.transaction() as conn, conn.cursor() as cur:
            cur.execute(statement)
