"""Bedrock calls authorized against the synthesized roles of a stage on Bedrock (`-c embedder=bedrock
-c vectorBackend=pgvector -c rerank=true`), as the permission tests do for the dev stage's calls.

The Bedrock stand-in serves the real boto3 clients and asks the rehearsal's IAM (the local AWS
API, IAM enforced) about every call, as the caller's role: bedrock:InvokeModel on the model's
foundation-model ARN, bedrock:Rerank plus InvokeModel on the rerank model's ARN.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from refarch.bedrock import BedrockEmbedder, BedrockServiceError
from refarch.embeddings import embed_query, make_embedder
from refarch.lanes import topology
from refarch.search.rerank import make_reranker
from refarch.settings import Settings
from refarch_local.rehearsal.iam import CallDenied, IamEnforcedAws
from refarch_local.rehearsal.template import REPO_ROOT, Assembly, Resolver, synthesized_assembly
from refarch_local.standins import BedrockStandIn
from tests.rehearsal.test_permissions_enforced import (  # the same local AWS and runtimes, for this assembly
    assert_all_allowed,
    aws,
    container_runtime,
    function_runtime,
    mark,
    new_denials,
    resolver,
)

__all__ = ["aws", "resolver"]  # fixtures, used by name

BEDROCK_STAGE = {"embedder": "bedrock", "vectorBackend": "pgvector", "rerank": "true"}


@pytest.fixture(scope="module")
def assembly() -> Assembly:
    """cdk.out of the dev stage on Bedrock and pgvector, with reranking (synthesized once, cached)."""
    return synthesized_assembly(REPO_ROOT / ".refarch", context=BEDROCK_STAGE).assembly


@pytest.fixture
def bedrock(aws: IamEnforcedAws) -> Iterator[BedrockStandIn]:
    """The Bedrock stand-in, authorizing each call as the role whose keys signed it."""

    def authorize(access_key_id: str, action: str, resource: str) -> str | None:
        user = aws.user_for_access_key(access_key_id)
        if user is None:
            return f"access key {access_key_id} belongs to no runtime role"
        try:
            aws.authorize(user, action, resource)
        except CallDenied as err:
            return str(err)
        return None

    with BedrockStandIn(authorizer=authorize) as stand_in:
        yield stand_in


def enter_with_bedrock(runtime, aws, monkeypatch, home: Path, bedrock: BedrockStandIn) -> Settings:  # type: ignore[no-untyped-def]
    """The runtime's template environment and keys, with Bedrock's endpoint at the stand-in."""
    runtime.enter(aws, monkeypatch, home)
    monkeypatch.setenv("REFARCH_BEDROCK_ENDPOINT_URL", bedrock.url)
    monkeypatch.setenv("REFARCH_BEDROCK_MAX_ATTEMPTS", "1")
    return Settings()


@pytest.mark.parametrize("lane", ["live", "bulk"])
def test_each_emu_lane_may_invoke_the_stages_embedding_model_and_no_other(
    aws: IamEnforcedAws,
    resolver: Resolver,
    assembly: Assembly,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    bedrock: BedrockStandIn,
    lane: str,
) -> None:
    # Given the lane's Emu function, from its template environment, with its role's keys
    runtime = function_runtime(assembly, resolver, topology.EMU_HANDLER, REFARCH_EMU_LANE=lane)
    settings = enter_with_bedrock(runtime, aws, monkeypatch, tmp_path, bedrock)
    since = mark(aws)
    # When it embeds a chunk with the embedder its environment configures
    embedder = make_embedder(settings)
    assert embedder.model_id == "bedrock:amazon.titan-embed-text-v2:0:1024"
    assert len(embedder.embed(["red shoes", "blue kettle"])) == 2
    # Then IAM allowed each InvokeModel call
    assert_all_allowed(aws, since, at_least=2)
    # When the same role tries another model, Then IAM refuses it (the grant is the model's ARN only)
    other = BedrockEmbedder.from_settings(settings.model_copy(update={"bedrock_model": "cohere.embed-english-v3"}))
    since = mark(aws)
    with pytest.raises(BedrockServiceError, match="AccessDeniedException"):
        other.embed(["red shoes"])
    (denial,) = new_denials(aws, since)
    assert (denial.action, denial.resource.rsplit("/", 1)[-1]) == ("bedrock:InvokeModel", "cohere.embed-english-v3")


def test_web_may_embed_queries_and_rerank(
    aws: IamEnforcedAws,
    resolver: Resolver,
    assembly: Assembly,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    bedrock: BedrockStandIn,
) -> None:
    # Given the web container, from its task definition's environment, with its task role's keys
    settings = enter_with_bedrock(container_runtime(assembly, resolver, "web"), aws, monkeypatch, tmp_path, bedrock)
    since = mark(aws)
    # When it embeds a query and reranks candidates with the reranker its environment configures
    assert len(embed_query(make_embedder(settings), "running shoes")) == 1024
    reranker = make_reranker(settings)
    assert reranker is not None
    assert [i for i, _ in reranker.rank("running shoes", ["kettle", "running shoes"])] == [1, 0]
    # Then IAM allowed InvokeModel (Titan), Rerank, and InvokeModel on the rerank model
    assert_all_allowed(aws, since, at_least=3)
    assert bedrock.rerank_calls == 1


def test_the_reindex_function_builds_the_embedder_but_may_not_invoke_it(
    aws: IamEnforcedAws,
    resolver: Resolver,
    assembly: Assembly,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    bedrock: BedrockStandIn,
) -> None:
    # Given the reindex function (it names a generation's model and sizes its index; Emu embeds)
    runtime = function_runtime(assembly, resolver, topology.REINDEX_HANDLER)
    settings = enter_with_bedrock(runtime, aws, monkeypatch, tmp_path, bedrock)
    embedder = make_embedder(settings)
    assert embedder.dimension == 1024
    # When it calls the model anyway, Then IAM refuses: InvokeModel is granted only to those that embed
    since = mark(aws)
    with pytest.raises(BedrockServiceError, match="AccessDeniedException"):
        embedder.embed(["x"])
    assert [d.action for d in new_denials(aws, since)] == ["bedrock:InvokeModel"]
