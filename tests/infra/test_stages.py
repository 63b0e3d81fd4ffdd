"""What differs between stages comes from the typed config, and every stack reads clearly in the console."""

from __future__ import annotations

import pytest

from cdk_app.config import DEV
from refarch.lanes import topology
from refarch.lanes.topology import DEFAULT_TOPOLOGY
from tests.infra.conftest import Synthesized
from tests.infra.templates import event_source_of, function_logical_id, resources, state_machine_definition


def test_prod_database_is_multi_az_protected_and_snapshotted(prod: Synthesized, dev: Synthesized) -> None:
    # Given both stages' database instances
    prod_data = prod.template_json(prod.stacks.data)
    prod_db = next(iter(resources(prod_data, "AWS::RDS::DBInstance").values()))
    dev_db = next(iter(resources(dev.template_json(dev.stacks.data), "AWS::RDS::DBInstance").values()))
    # Then prod is multi-AZ with deletion protection and a final snapshot; dev is cheap and disposable
    assert prod_db["Properties"]["MultiAZ"] is True
    assert prod_db["Properties"]["DeletionProtection"] is True
    assert prod_db["DeletionPolicy"] == "Snapshot"
    assert prod_db["Properties"]["BackupRetentionPeriod"] == prod.config.db_backup_retention_days
    assert dev_db["Properties"]["MultiAZ"] is False
    assert dev_db["Properties"]["DeletionProtection"] is False
    assert dev_db["DeletionPolicy"] == "Delete"


def test_nat_gateways_and_endpoints_follow_the_stage(prod: Synthesized, dev: Synthesized) -> None:
    # Given both stages' networks
    prod_net = prod.template_json(prod.stacks.network)
    dev_net = dev.template_json(dev.stacks.network)

    def interface_endpoints(template: dict) -> set[str]:
        found = resources(template, "AWS::EC2::VPCEndpoint").values()
        return {
            str(e["Properties"]["ServiceName"]) for e in found if e["Properties"].get("VpcEndpointType") == "Interface"
        }

    # Then NAT gateways match the config, and only prod has the SQS / Secrets Manager / Logs endpoints
    assert len(resources(dev_net, "AWS::EC2::NatGateway")) == dev.config.nat_gateways == 1
    assert len(resources(prod_net, "AWS::EC2::NatGateway")) == prod.config.nat_gateways == 2
    assert interface_endpoints(dev_net) == set()
    assert {name.rsplit(".", 1)[-1] for name in interface_endpoints(prod_net)} == {"sqs", "secretsmanager", "logs"}
    assert len(resources(dev_net, "AWS::EC2::FlowLog")) == 1


@pytest.mark.parametrize("lane_name", ["live", "bulk"])
def test_prod_scaling_reaches_each_emu_lane_and_the_map(prod: Synthesized, lane_name: str) -> None:
    # Given prod's Emu function and event source mapping of one lane
    emu = prod.template_json(prod.stacks.emu)
    function_id = function_logical_id(emu, topology.EMU_HANDLER, lane=lane_name)
    function = resources(emu, "AWS::Lambda::Function")[function_id]["Properties"]
    mapping = event_source_of(emu, function_id)
    lane = prod.config.topology.lane(lane_name)  # type: ignore[arg-type]
    # Then the prod topology (not the default) is what gets deployed
    assert lane != DEFAULT_TOPOLOGY.lane(lane_name)  # type: ignore[arg-type]
    assert function["ReservedConcurrentExecutions"] == lane.reserved_concurrency
    assert mapping["ScalingConfig"]["MaximumConcurrency"] == lane.max_concurrency
    assert mapping["ScalingConfig"]["MaximumConcurrency"] <= function["ReservedConcurrentExecutions"]
    # And the bootstrap Map fans out at prod's concurrency, not dev's
    assert prod.config.topology.bootstrap_max_concurrency != DEV.topology.bootstrap_max_concurrency
    states = state_machine_definition(prod.template_json(prod.stacks.pelican))["States"]
    (bootstrap_map,) = [state for state in states.values() if state["Type"] == "Map"]
    assert bootstrap_map["MaxConcurrency"] == prod.config.topology.bootstrap_max_concurrency


def test_every_stack_has_a_description_tags_and_the_stage_prefix(any_stage: Synthesized) -> None:
    # Given every stack of the stage
    for stack in any_stage.stacks.all():
        template = any_stage.template_json(stack)
        # Then its name starts with the stage prefix, it describes itself, and its resources are tagged
        assert stack.stack_name.startswith(any_stage.config.stack_prefix + "-")
        assert template["Description"].startswith("refarch ")
        tagged = [r for r in template["Resources"].values() if "Tags" in r.get("Properties", {})]
        assert tagged, stack.stack_name
        for resource in tagged:
            # CloudFormation writes tags as a list of Key/Value pairs, or as a map for a few types (SSM)
            tags = resource["Properties"]["Tags"]
            stage_tag = (
                {t["Key"]: t["Value"] for t in tags}.get("stage") if isinstance(tags, list) else tags.get("stage")
            )
            assert stage_tag == any_stage.config.name, (stack.stack_name, resource["Type"], tags)
