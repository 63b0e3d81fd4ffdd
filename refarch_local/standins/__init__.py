"""Local HTTP stand-ins for the paid APIs: OpenAI embeddings, a Pinecone index, Amazon Bedrock.

The real `openai`, `pinecone` and boto3 SDKs talk to these over HTTP exactly as they talk to the
services (point OPENAI_BASE_URL at `OpenAIStandIn.base_url`, PINECONE_HOST at
`PineconeStandIn.url`, REFARCH_BEDROCK_ENDPOINT_URL at `BedrockStandIn.url`); nothing in the SDKs
is patched. Each one checks the shape of every request, counts what it answered, and injects faults
on demand (429 with Retry-After, 500, or a hang past the client's timeout), so tests, the demo and
the chaos harness exercise the failure paths without an account or a network.

From a shell: `python -m refarch_local.standins openai --port 8081 --fault-rate 0.3`
or `python -m refarch_local.standins pinecone --port 8082 --dimension 384`
or `python -m refarch_local.standins bedrock --port 8083`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from refarch_local.standins.bedrock_standin import BedrockStandIn
from refarch_local.standins.openai_standin import OpenAIStandIn, estimated_tokens, hashed_embedding
from refarch_local.standins.pinecone_standin import PineconeStandIn
from refarch_local.standins.server import FAULT_KINDS, ApiError, StandInServer

__all__ = [
    "FAULT_KINDS",
    "ApiError",
    "BedrockStandIn",
    "OpenAIStandIn",
    "PineconeStandIn",
    "StandInServer",
    "estimated_tokens",
    "hashed_embedding",
    "main",
    "serve",
]

# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def serve(
    port: int,
    fault_rate: float = 0.0,
    *,
    api: str = "openai",
    dimension: int = 384,
    fault_kinds: Iterable[str] = FAULT_KINDS,
    retry_after_seconds: float = 1.0,
    hang_seconds: float = 30.0,
    latency_seconds: float = 0.0,
    seed: int | None = None,
    api_key: str | None = None,
) -> None:
    """Run one stand-in (api "openai", "pinecone" or "bedrock") on 127.0.0.1:port until Ctrl-C."""
    common: dict[str, Any] = {
        "port": port,
        "fault_rate": fault_rate,
        "fault_kinds": fault_kinds,
        "retry_after_seconds": retry_after_seconds,
        "hang_seconds": hang_seconds,
        "latency_seconds": latency_seconds,
        "seed": seed,
    }
    stand_in: OpenAIStandIn | PineconeStandIn | BedrockStandIn
    if api == "openai":
        stand_in = OpenAIStandIn(api_key=api_key, **common).start()
        where = f"OPENAI_BASE_URL={stand_in.base_url}"
    elif api == "pinecone":
        stand_in = PineconeStandIn(dimension=dimension, api_key=api_key or "local-pinecone-key", **common).start()
        where = f"PINECONE_HOST={stand_in.url} PINECONE_API_KEY={stand_in.api_key}"
    elif api == "bedrock":
        stand_in = BedrockStandIn(**common).start()
        where = f"REFARCH_EMBEDDER=bedrock REFARCH_BEDROCK_ENDPOINT_URL={stand_in.url}"
    else:
        raise ValueError(f"api must be 'openai', 'pinecone' or 'bedrock', got {api!r}")
    print(f"{stand_in.name} listening; use {where} (fault rate {fault_rate:.0%}). Ctrl-C stops.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stand_in.stop()


def main(argv: list[str] | None = None) -> None:
    """`python -m refarch_local.standins {openai|pinecone|bedrock} --port N --fault-rate F`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m refarch_local.standins", description=main.__doc__)
    parser.add_argument("api", choices=["openai", "pinecone", "bedrock"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of requests that fail, 0-1")
    parser.add_argument("--faults", default=",".join(FAULT_KINDS), help="comma-separated kinds to inject")
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds on injected 429s")
    parser.add_argument("--hang-seconds", type=float, default=30.0, help="how long an injected timeout hangs")
    parser.add_argument("--latency", type=float, default=0.0, help="delay every answer by up to this many seconds")
    parser.add_argument("--dimension", type=int, default=384, help="Pinecone index dimension")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    serve(
        args.port,
        args.fault_rate,
        api=args.api,
        dimension=args.dimension,
        fault_kinds=args.faults.split(","),
        retry_after_seconds=args.retry_after,
        hang_seconds=args.hang_seconds,
        latency_seconds=args.latency,
        seed=args.seed,
    )
