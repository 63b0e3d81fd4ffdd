#!/usr/bin/env python3
"""CDK entry point: `cdk deploy --all` (dev) or `cdk deploy --all -c stage=prod` from the repo root.

Optional context: `-c alarmEmail=you@example.com` subscribes an address to the alarm topic;
`-c embedder=bedrock`, `-c vectorBackend=pgvector`, `-c rerank=true`, `-c source=articles` and
`-c keepOpenaiAccess=true` override the stage config's choices (docs/deploy.md): Bedrock and pgvector need no
secret created by hand and no account outside AWS; a source is a definition in refarch/source/definitions/
(docs/own-table.md); keepOpenaiAccess keeps the OpenAI key granted while a move to Bedrock re-indexes.
"""

from __future__ import annotations

import dataclasses

import aws_cdk as cdk

from cdk_app.config import stage_config, with_context
from cdk_app.system import build_system


def main() -> None:
    """Build the chosen stage's stacks and synthesize them."""
    app = cdk.App()
    config = stage_config(app.node.try_get_context("stage") or "dev")
    config = with_context(
        config,
        embedder=app.node.try_get_context("embedder"),
        vector_backend=app.node.try_get_context("vectorBackend"),
        rerank=app.node.try_get_context("rerank"),
        source=app.node.try_get_context("source"),
        keep_openai_access=app.node.try_get_context("keepOpenaiAccess"),
    )
    alarm_email = app.node.try_get_context("alarmEmail")
    if alarm_email:
        config = dataclasses.replace(config, alarm_email=alarm_email)
    build_system(app, config)
    app.synth()


if __name__ == "__main__":
    main()
