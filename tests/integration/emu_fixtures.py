"""Fixtures of the Emu tests (a pytest plugin: `pytest_plugins = ["tests.integration.emu_fixtures"]`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from refarch_local.standins import BedrockStandIn, OpenAIStandIn, PineconeStandIn


@pytest.fixture
def openai_standin() -> Iterator[OpenAIStandIn]:
    """An OpenAI stand-in whose injected 429s ask for a short wait and whose hangs outlast a 1 s timeout."""
    with OpenAIStandIn(retry_after_seconds=0.2, hang_seconds=3.0, seed=7) as stand_in:
        yield stand_in


@pytest.fixture
def bedrock_standin() -> Iterator[BedrockStandIn]:
    """A Bedrock stand-in whose injected throttles are retried by botocore and whose hangs outlast a 1 s timeout."""
    with BedrockStandIn(hang_seconds=3.0, seed=7) as stand_in:
        yield stand_in


@pytest.fixture
def pinecone_standins() -> Iterator[list[PineconeStandIn]]:
    """Pinecone stand-ins started by `start_pinecone` (stopped after the test)."""
    started: list[PineconeStandIn] = []
    yield started
    for stand_in in started:
        stand_in.stop()
