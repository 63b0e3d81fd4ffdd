"""Synthesize each stage once per session (bundling skipped; one test bundles the Emu asset itself)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

# jsii prints a banner about Node's support window on every start; it says nothing about our code.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from cdk_app.config import DEV, PROD, CustomDomain, SearchConfig, StageConfig, with_context  # noqa: E402
from cdk_app.system import SystemStacks, build_system  # noqa: E402

# Canaries: if the app ever copied API keys from the deploying shell into a template, the
# no-secret-in-templates test finds these strings.
CANARY_SECRETS = {
    "OPENAI_API_KEY": "sk-test-canary-0f3b9c2e7a1d4b6f8e0a2c4e6b8d0f1a",
    "PINECONE_API_KEY": "pcsk_canary_7d1e3f5a9b2c4d6e8f0a1b3c5d7e9f00",
    "REFARCH_EDIT_PASSWORD": "canary-edit-password-4b8d2f6a",
    "REFARCH_SESSION_SECRET": "canary-session-secret-9e1c5a7b",
    "DATABASE_URL": "postgresql://canary_user:canary-db-password-3c7e@db.example:5432/refarch",
}

# A stage exercising the other branches: pgvector instead of Pinecone, own domain instead of CloudFront,
# another embedder (512-d).
VARIANT = replace(
    DEV,
    name="variant",
    search=SearchConfig(vector_backend="pgvector", openai_dimensions=512, source="articles"),
    custom_domain=CustomDomain(
        domain_name="search.example.com",
        certificate_arn="arn:aws:acm:us-east-1:111122223333:certificate/00000000-0000-0000-0000-000000000000",
        hosted_zone_id="Z0000000000000000000",
        hosted_zone_name="example.com",
    ),
    alarm_email="ops@example.com",
)


# The session fixtures below synthesize a stage once per process. Under pytest-xdist every test
# using one runs on the same worker (the group), so each stage is synthesized once per run, not
# once per worker (the construct tree the tests walk cannot be shared between processes).
SYNTH_FIXTURES = {"dev", "prod", "variant", "bedrock", "any_stage"}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put every test here that uses a synthesized stage in one xdist group."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here) and SYNTH_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("cdk-synth"))


@dataclass
class Synthesized:
    """One stage's synthesized cloud assembly."""

    config: StageConfig
    app: cdk.App
    stacks: SystemStacks
    outdir: Path

    def template_json(self, stack: cdk.Stack) -> dict[str, Any]:
        """The stack's CloudFormation template as parsed JSON."""
        return json.loads((self.outdir / f"{stack.stack_name}.template.json").read_text())

    def template(self, stack: cdk.Stack) -> Template:
        """The stack's template for aws_cdk.assertions."""
        return Template.from_json(self.template_json(stack))

    def template_files(self) -> list[Path]:
        """Every synthesized template file."""
        return sorted(self.outdir.glob("*.template.json"))


@contextmanager
def canary_environment() -> Iterator[None]:
    """Fake secrets in the environment while the app builds, as a deploying shell might hold real ones.

    Restored right after, so no other test in the session sees them.
    """
    saved = {name: os.environ.get(name) for name in CANARY_SECRETS}
    os.environ.update(CANARY_SECRETS)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def synthesize(config: StageConfig, outdir: Path, *, bundle_stacks: list[str] | None = None) -> Synthesized:
    """Build and synthesize the whole stage into `outdir` (no asset bundling unless asked)."""
    context: dict[str, Any] = {
        "@aws-cdk/core:validationReportJson": True,
        "aws:cdk:bundling-stacks": bundle_stacks or [],
    }
    app = cdk.App(outdir=str(outdir), context=context)
    with canary_environment():
        stacks = build_system(app, config)
        app.synth()
    return Synthesized(config=config, app=app, stacks=stacks, outdir=outdir)


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The dev stage, as `cdk synth` builds it by default."""
    return synthesize(DEV, tmp_path_factory.mktemp("cdk-dev"))


@pytest.fixture(scope="session")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The prod stage."""
    return synthesize(PROD, tmp_path_factory.mktemp("cdk-prod"))


@pytest.fixture(scope="session")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """pgvector + custom domain + the articles source: the branches the shipped stages do not take."""
    return synthesize(VARIANT, tmp_path_factory.mktemp("cdk-variant"))


@pytest.fixture(scope="session")
def bedrock(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """No account outside AWS: `-c embedder=bedrock -c vectorBackend=pgvector -c rerank=true`, VPC endpoints on."""
    stage = replace(DEV, name="bedrock", vpc_endpoints=True, search=SearchConfig())
    config = with_context(stage, embedder="bedrock", vector_backend="pgvector", rerank="true")
    return synthesize(config, tmp_path_factory.mktemp("cdk-bedrock"))


@pytest.fixture(scope="session", params=["dev", "prod", "variant", "bedrock"])
def any_stage(request: pytest.FixtureRequest) -> Synthesized:
    """Each synthesized stage in turn."""
    return request.getfixturevalue(request.param)
