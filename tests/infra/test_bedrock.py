"""A stage on Amazon Bedrock and pgvector: no secret to create by hand, no account outside AWS, and
Bedrock's models invocable only by the runtimes that embed (or rerank), only on the models' ARNs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cdk_app.config import DEV, SearchConfig, with_context
from cdk_app.reindex_stack import configured_generation
from refarch.lanes import topology
from tests.infra.conftest import Synthesized, synthesize
from tests.infra.templates import (
    container,
    container_task_role,
    environment,
    function_by_handler,
    function_role,
    grants,
    resources,
)

TITAN_ARN = "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0"
# -c rerank=true in us-east-1 (the stages' region), where Amazon Rerank is not offered: Cohere Rerank 3.5.
RERANK_ARN = "arn:aws:bedrock:us-east-1::foundation-model/cohere.rerank-v3-5:0"
COHERE_ARN = "arn:aws:bedrock:us-east-1::foundation-model/cohere.embed-english-v3"


def test_no_openai_or_pinecone_secret_is_referenced_anywhere(bedrock: Synthesized) -> None:
    # Given every synthesized template of the stage
    texts = {path.name: path.read_text() for path in bedrock.template_files()}
    # Then none names the OpenAI or Pinecone key's secret, or an environment variable pointing at one
    for marker in ("openai-api-key", "pinecone-api-key", "REFARCH_OPENAI_SECRET_ARN", "REFARCH_PINECONE_SECRET_ARN"):
        assert [name for name, text in texts.items() if marker in text] == [], marker
    # And nothing of Pinecone is deployed (no index stack, no namespace)
    assert bedrock.stacks.pinecone_index is None
    assert all("PINECONE" not in text for text in texts.values())


def invoke_model_grants(synthesized: Synthesized) -> dict[str, list[str]]:
    """Role logical id (per stack) -> the resources bedrock:InvokeModel is granted on, for every role that has it."""
    found: dict[str, list[str]] = {}
    for stack in synthesized.stacks.all():
        template = synthesized.template_json(stack)
        for role_id in resources(template, "AWS::IAM::Role"):
            targets = grants(template, role_id).get("bedrock:InvokeModel")
            if targets:
                found[f"{stack.stack_name}/{role_id}"] = targets
    return found


def test_invoke_model_is_granted_only_to_the_runtimes_that_embed_and_only_on_the_models_arns(
    bedrock: Synthesized,
) -> None:
    # Given the roles that may invoke a Bedrock model
    found = invoke_model_grants(bedrock)
    emu = bedrock.template_json(bedrock.stacks.emu)
    frontend = bedrock.template_json(bedrock.stacks.frontend)
    emu_roles = {
        f"{bedrock.stacks.emu.stack_name}/{function_role(emu, topology.EMU_HANDLER, lane=lane)}"
        for lane in ("live", "bulk")
    }
    web_role = f"{bedrock.stacks.frontend.stack_name}/{container_task_role(frontend, 'web')}"
    # Then exactly the two Emu lanes and the web task (queries, rerank): not re-index, reconcile, migrate, listener
    assert set(found) == emu_roles | {web_role}
    # And only on the embedding model's ARN (web: also the rerank model's)
    for role in emu_roles:
        assert found[role] == [f'"{TITAN_ARN}"']
    assert sorted(found[web_role]) == sorted([f'"{TITAN_ARN}"', f'"{RERANK_ARN}"'])
    # And bedrock:Rerank (which takes no resource) only for the web task
    reranking = [
        role_id
        for stack in bedrock.stacks.all()
        for role_id in resources(bedrock.template_json(stack), "AWS::IAM::Role")
        if "bedrock:Rerank" in grants(bedrock.template_json(stack), role_id)
    ]
    assert reranking == [container_task_role(frontend, "web")]


def test_the_runtimes_are_configured_for_bedrock_and_the_re_index_keys_on_its_model(bedrock: Synthesized) -> None:
    # Given the Emu function's environment and the re-index's configured generation
    emu = function_by_handler(bedrock.template_json(bedrock.stacks.emu), topology.EMU_HANDLER, lane="bulk")
    env = environment(emu)
    # Then it embeds with Titan at the configured size, with no OpenAI settings
    assert (env["REFARCH_EMBEDDER"], env["REFARCH_BEDROCK_MODEL"], env["REFARCH_BEDROCK_DIMENSIONS"]) == (
        "bedrock",
        "amazon.titan-embed-text-v2:0",
        "1024",
    )
    assert not any(name.startswith("REFARCH_OPENAI") for name in env)
    # And the migrate step sizes the first pgvector table for it
    data = bedrock.template_json(bedrock.stacks.data)
    migrate = function_by_handler(data, topology.MIGRATE_HANDLER)
    assert environment(migrate)["REFARCH_VECTOR_DIMENSIONS"] == "1024"
    # And a deploy re-indexes when the embedder changes: the generation it asks for is Titan's
    assert configured_generation(bedrock.config)["embedder"] == {
        "kind": "bedrock",
        "model": "amazon.titan-embed-text-v2:0",
        "dimensions": 1024,
    }
    assert (
        "amazon.titan-embed-text-v2:0"
        in (bedrock.outdir / f"{bedrock.stacks.reindex.stack_name}.template.json").read_text()
    )


def test_the_bedrock_runtime_endpoints_keep_the_calls_inside_the_vpc(bedrock: Synthesized) -> None:
    # Given the stage's interface endpoints
    network = bedrock.template_json(bedrock.stacks.network)
    names = {
        str(e["Properties"]["ServiceName"]).rsplit(".", 1)[-1]
        for e in resources(network, "AWS::EC2::VPCEndpoint").values()
        if e["Properties"].get("VpcEndpointType") == "Interface"
    }
    # Then Bedrock's runtime (embeddings) and agent runtime (Rerank) are among them
    assert {"bedrock-runtime", "bedrock-agent-runtime"} <= names


def search_runtimes(synthesized: Synthesized) -> dict[str, tuple[str, dict[str, object]]]:
    """The runtimes that embed or search (each builds the live generations' embedders): name -> (role, environment).

    The role is `<stack>/<logical id>`, as invoke_model_grants names it.
    """
    stacks = synthesized.stacks
    found: dict[str, tuple[str, dict[str, object]]] = {}
    functions = {
        "emu live": (stacks.emu, topology.EMU_HANDLER, "live"),
        "emu bulk": (stacks.emu, topology.EMU_HANDLER, "bulk"),
        "reindex": (stacks.reindex, topology.REINDEX_HANDLER, None),
        "reconcile shard": (stacks.pelican, topology.RECONCILE_SHARD_HANDLER, None),
    }
    for name, (stack, handler, lane) in functions.items():
        template = synthesized.template_json(stack)
        role = f"{stack.stack_name}/{function_role(template, handler, lane=lane)}"
        found[name] = (role, environment(function_by_handler(template, handler, lane=lane)))
    frontend = synthesized.template_json(stacks.frontend)
    found["web"] = (
        f"{stacks.frontend.stack_name}/{container_task_role(frontend, 'web')}",
        environment(container(frontend, "web")),
    )
    return found


def secret_readers(synthesized: Synthesized, secret_name: str) -> set[str]:
    """Every role (`<stack>/<logical id>`) allowed secretsmanager:GetSecretValue on the named secret."""
    readers: set[str] = set()
    for stack in synthesized.stacks.all():
        template = synthesized.template_json(stack)
        for role_id in resources(template, "AWS::IAM::Role"):
            targets = grants(template, role_id).get("secretsmanager:GetSecretValue", [])
            if any(f":secret:{secret_name}" in target for target in targets):
                readers.add(f"{stack.stack_name}/{role_id}")
    return readers


def test_a_move_from_openai_to_bedrock_keeps_the_openai_key_until_told_otherwise(
    bedrock: Synthesized, tmp_path
) -> None:
    # Given a stage moving from OpenAI to Titan with keep_openai_access (docs/deploy.md): until the re-index
    # switches, search embeds queries with the active (OpenAI) generation's model, and Emu embeds edits into both
    moving = synthesize(
        replace(
            DEV,
            name="to-bedrock",
            search=SearchConfig(embedder="bedrock", vector_backend="pgvector", keep_openai_access=True),
        ),
        tmp_path,
    )
    secret = moving.config.search.openai_secret_name
    runtimes = search_runtimes(moving)
    # Then exactly the runtimes that embed or search (Emu's lanes, web, re-index, reconcile) may read the OpenAI
    # key: not the listener, bootstrap, migrate or any other function
    assert secret_readers(moving, secret) == {role for role, _ in runtimes.values()}
    # And each of them is told where it is and which model the OpenAI generation has, beside the new embedder
    for name, (_, env) in runtimes.items():
        assert f":secret:{secret}" in str(env["REFARCH_OPENAI_SECRET_ARN"]), name
        assert (env["REFARCH_EMBEDDER"], env["REFARCH_OPENAI_MODEL"]) == ("bedrock", "text-embedding-3-small"), name
        assert env["REFARCH_BEDROCK_MODEL"] == "amazon.titan-embed-text-v2:0", name
    # And the re-index starts on Titan, which the runtimes that embed may invoke (only they, only on its ARN)
    assert configured_generation(moving.config)["embedder"]["kind"] == "bedrock"
    embedding = {runtimes[name][0] for name in ("emu live", "emu bulk", "web")}
    assert invoke_model_grants(moving) == {role: [f'"{TITAN_ARN}"'] for role in embedding}
    # When the same move is deployed without keep_openai_access (the `bedrock` stage: OpenAI by default, then
    # -c embedder=bedrock), Then no role may read the OpenAI key, and no template names it (the test above)
    assert secret_readers(bedrock, bedrock.config.search.openai_secret_name) == set()


def test_a_move_between_bedrock_models_keeps_invoke_model_on_the_old_model(tmp_path) -> None:
    # Given a stage moving from Titan to Cohere Embed with Titan in keep_bedrock_models
    moving = synthesize(
        replace(
            DEV,
            name="bedrock-move",
            search=SearchConfig(
                embedder="bedrock",
                bedrock_model="cohere.embed-english-v3",
                vector_backend="pgvector",
                keep_bedrock_models=("amazon.titan-embed-text-v2:0",),
            ),
        ),
        tmp_path,
    )
    runtimes = search_runtimes(moving)
    # Then the runtimes that embed (Emu's lanes, web) may invoke both models, and only those two ARNs
    embedding = {runtimes[name][0] for name in ("emu live", "emu bulk", "web")}
    found = invoke_model_grants(moving)
    assert set(found) == embedding
    for role in embedding:
        assert sorted(found[role]) == sorted([f'"{COHERE_ARN}"', f'"{TITAN_ARN}"']), role
    # And they are configured for the new model (a generation records its own: the old one is built from its record)
    for name, (_, env) in runtimes.items():
        assert env["REFARCH_BEDROCK_MODEL"] == "cohere.embed-english-v3", name
    # And still no OpenAI key is referenced anywhere
    assert all("openai-api-key" not in path.read_text() for path in moving.template_files())


@pytest.mark.parametrize(
    ("context", "error"),
    [
        ({"embedder": "bedrok"}, "choose openai or bedrock"),
        ({"rerank": "yes"}, "rerank=yes: choose true or false"),
        ({"keep_openai_access": "ture"}, "keepOpenaiAccess=ture: choose true or false"),
    ],
)
def test_a_mistyped_command_line_choice_is_an_error_not_the_default(context: dict[str, str], error: str) -> None:
    # When a choice on the command line is misspelled, Then synth stops with the choices
    with pytest.raises(ValueError, match=error):
        with_context(DEV, **context)  # type: ignore[arg-type]


def test_keep_openai_access_on_the_command_line_keeps_the_key_during_a_move_to_bedrock() -> None:
    # When a move to Bedrock is deployed with -c keepOpenaiAccess=true, Then the runtimes keep the OpenAI key
    moving = with_context(DEV, embedder="bedrock", keep_openai_access="true").search
    assert (moving.embedder, moving.keep_openai_access, moving.openai_access) == ("bedrock", True, True)
    # And with -c keepOpenaiAccess=false (or without it), they do not
    assert not with_context(DEV, embedder="bedrock", keep_openai_access="FALSE").search.openai_access
    assert not with_context(DEV, embedder="bedrock").search.openai_access


def test_rerank_true_picks_a_model_the_stages_region_offers_and_a_model_it_does_not_offer_stops_synth() -> None:
    # When reranking is turned on in us-east-1, Then the model picked is one Bedrock serves there
    assert with_context(DEV, rerank="true").search.rerank_model == "cohere.rerank-v3-5:0"
    # And in a region offering Amazon Rerank, that one (no Marketplace subscription needed)
    assert with_context(replace(DEV, region="us-west-2"), rerank="true").search.rerank_model == "amazon.rerank-v1:0"
    # When a stage names a rerank model its region does not offer, Then synth stops naming the regions that do
    with pytest.raises(ValueError, match="amazon.rerank-v1:0 is not offered in us-east-1.*us-west-2"):
        replace(DEV, search=SearchConfig(rerank_model="amazon.rerank-v1:0"))
    # And turning reranking on where Bedrock reranks nowhere stops synth too
    with pytest.raises(ValueError, match="no rerank model in eu-west-1"):
        with_context(replace(DEV, region="eu-west-1"), rerank="true")
