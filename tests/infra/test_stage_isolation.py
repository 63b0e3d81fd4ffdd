"""Stages never share state (ARCHITECTURE.md decision 11): every stage the app defines, synthesized, holds
its data under names of its own: queues, secrets, the Pinecone index and namespace, log groups, the database."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from cdk_app.config import DEV, STAGES, SearchConfig
from refarch.lanes import topology
from tests.infra.conftest import Synthesized, synthesize
from tests.infra.stage_names import (
    DataName,
    data_holding_names,
    describe_shared,
    runtime_environments,
    shared_names,
)
from tests.infra.templates import Template, function_logical_id, resources


@pytest.fixture(scope="module")
def every_stage(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Synthesized]:
    """Each stage of cdk_app.config.STAGES, synthesized (dev and prod: the session's own synths)."""
    return {
        name: request.getfixturevalue(name)
        if name in ("dev", "prod")
        else synthesize(config, tmp_path_factory.mktemp(f"cdk-{name}"))
        for name, config in STAGES.items()
    }


def stage_templates(stage: Synthesized) -> dict[str, Template]:
    """Stack name -> template, for every stack of the stage."""
    return {stack.stack_name: stage.template_json(stack) for stack in stage.stacks.all()}


def test_no_two_stages_share_a_data_holding_name(every_stage: dict[str, Synthesized]) -> None:
    # Given every data-holding name each stage's templates create or reference
    per_stage = {name: data_holding_names(stage_templates(stage)) for name, stage in every_stage.items()}
    # Then the collection sees what holds the stage's data (so the comparison below is not vacuous)
    for name, stage in every_stage.items():
        search = stage.config.search
        expected = {
            DataName("SQS queue", f"{name}-{topology.QUEUE_NAME}"),
            DataName("SQS queue", f"{name}-{topology.BULK_QUEUE_NAME}"),
            DataName("secret", search.openai_secret_name),
            DataName("secret", search.pinecone_secret_name),
            DataName("secret", f"{stage.config.stack_prefix}/database"),
            DataName("Pinecone index", search.pinecone_index_name),
            DataName("Pinecone index + namespace", f"{search.pinecone_index_name} / {search.pinecone_namespace}"),
            DataName("database instance", f"refarch-{name}"),
            DataName("dashboard", f"refarch-{name}"),
            DataName("metrics namespace", f"Refarch/{name}"),
        }
        assert expected <= set(per_stage[name]), sorted(expected - set(per_stage[name]))
        assert {n.kind for n in per_stage[name]} >= {"log group", "secret", "SQS queue"}
    # And no name is used by two stages
    shared = shared_names(per_stage)
    assert not shared, describe_shared(shared)


def test_every_runtime_with_pinecone_writes_its_own_stage_namespace(every_stage: dict[str, Synthesized]) -> None:
    # Given every Lambda function and container of every stage that reaches Pinecone
    for stage in every_stage.values():
        search = stage.config.search
        reaching_pinecone = [
            (f"{stack}/{runtime}", env)
            for stack, template in stage_templates(stage).items()
            for runtime, env in runtime_environments(template)
            if "PINECONE_INDEX_NAME" in env
        ]
        assert len(reaching_pinecone) >= 3, (stage.config.name, reaching_pinecone)  # both Emu lanes and web at least
        # Then each is told the stage's index and namespace (without the namespace it would write `products`)
        for where, env in reaching_pinecone:
            assert env["PINECONE_INDEX_NAME"] == search.pinecone_index_name, where
            assert env.get("REFARCH_PINECONE_NAMESPACE") == search.pinecone_namespace, where


def test_a_name_hard_coded_for_every_stage_fails_naming_the_resource_and_both_stages(
    dev: Synthesized, prod: Synthesized
) -> None:
    # Given prod's templates with the live lane's queue named like dev's, and prod's live Emu pointed at
    # dev's Pinecone index without a namespace (as if both were hard-coded instead of carrying the stage)
    dev_templates = stage_templates(dev)
    prod_templates = copy.deepcopy(stage_templates(prod))
    prod_data = prod_templates[prod.stacks.data.stack_name]
    (live_queue,) = [
        queue
        for queue in resources(prod_data, "AWS::SQS::Queue").values()
        if queue["Properties"]["QueueName"] == f"prod-{topology.QUEUE_NAME}"
    ]
    live_queue["Properties"]["QueueName"] = f"dev-{topology.QUEUE_NAME}"
    prod_emu = prod_templates[prod.stacks.emu.stack_name]
    emu_id = function_logical_id(prod_emu, topology.EMU_HANDLER, lane="live")
    env = prod_emu["Resources"][emu_id]["Properties"]["Environment"]["Variables"]
    env["PINECONE_INDEX_NAME"] = dev.config.search.pinecone_index_name
    del env["REFARCH_PINECONE_NAMESPACE"]
    # When the names are compared
    shared = shared_names({"dev": data_holding_names(dev_templates), "prod": data_holding_names(prod_templates)})
    message = describe_shared(shared)
    # Then the failure names the queue and the index, with the resources of both stages that use them
    assert f"SQS queue 'dev-{topology.QUEUE_NAME}' is used by dev: Refarch-dev-Data/SyncQueue" in message
    assert "prod: Refarch-prod-Data/SyncQueue" in message
    assert f"Pinecone index {dev.config.search.pinecone_index_name!r} is used by dev: " in message
    assert f"prod: Refarch-prod-Emu/{emu_id}" in message
    # And the namespace the hard-coded runtime falls back to is the settings' default, not the stage's
    assert DataName("Pinecone index + namespace", f"{dev.config.search.pinecone_index_name} / products") in (
        data_holding_names(prod_templates)
    )


def test_each_stage_replaces_stage_in_its_names_and_a_copied_stage_must_bring_its_own() -> None:
    # Given the shipped dev stage and a stage with names of its own, one pinned, one templated
    pinned = replace(DEV, name="legacy", search=SearchConfig(pinecone_index_name="refarch-products"))
    # Then `{stage}` became each stage's name, and a pinned name stays as written
    assert (DEV.search.pinecone_index_name, DEV.search.pinecone_namespace) == ("refarch-dev-products", "dev-products")
    assert DEV.search.openai_secret_name == "refarch/dev/openai-api-key"
    assert (pinned.search.pinecone_index_name, pinned.search.pinecone_namespace) == (
        "refarch-products",
        "legacy-products",
    )
    # And a stage copied with dev's search settings is refused, as it would share dev's index and secrets
    with pytest.raises(ValueError, match="made for stage 'dev', and stage 'staging' would share"):
        replace(DEV, name="staging")
    # And names Pinecone or the queues would refuse are refused before any synth
    with pytest.raises(ValueError, match="stage name 'Staging'"):
        replace(DEV, name="Staging", search=SearchConfig())
    with pytest.raises(ValueError, match="Pinecone index name 'Refarch_products'"):
        replace(DEV, name="staging", search=SearchConfig(pinecone_index_name="Refarch_products"))
