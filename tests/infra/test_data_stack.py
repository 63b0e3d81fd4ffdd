"""The database and the sync queues: isolation, encryption, TLS, FIFO + DLQ, and the schema custom resource."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from aws_cdk.assertions import Match

from cdk_app import data_stack
from refarch.lanes import topology
from tests.infra.conftest import Synthesized
from tests.infra.templates import function_by_handler, only, resources


def _isolated_subnet_ids(network: dict) -> set[str]:
    """Logical ids of the VPC's isolated subnets, after checking none of them routes to the internet."""
    subnets = {
        logical_id
        for logical_id, r in resources(network, "AWS::EC2::Subnet").items()
        if {"Key": "aws-cdk:subnet-type", "Value": "Isolated"} in r["Properties"]["Tags"]
    }
    route_tables = {
        r["Properties"]["RouteTableId"]["Ref"]
        for r in resources(network, "AWS::EC2::SubnetRouteTableAssociation").values()
        if r["Properties"]["SubnetId"]["Ref"] in subnets
    }
    routes_out = [
        r
        for r in resources(network, "AWS::EC2::Route").values()
        if r["Properties"]["RouteTableId"]["Ref"] in route_tables
    ]
    assert routes_out == [], "isolated subnets must have no route to an internet or NAT gateway"
    return subnets


def test_database_is_private_in_isolated_subnets_and_encrypted(dev: Synthesized) -> None:
    # Given the dev stage
    data = dev.template_json(dev.stacks.data)
    network = dev.template_json(dev.stacks.network)
    # When we read the instance and its subnet group
    instance = only(data, "AWS::RDS::DBInstance")
    subnet_group = only(data, "AWS::RDS::DBSubnetGroup")
    # Then it is not public, encrypted, Postgres 16 with a pinned minor, and only in isolated subnets
    assert instance["PubliclyAccessible"] is False
    assert instance["StorageEncrypted"] is True
    assert instance["Engine"] == "postgres"
    assert instance["EngineVersion"].startswith("16.") and len(instance["EngineVersion"].split(".")) == 2
    isolated = _isolated_subnet_ids(network)
    assert len(isolated) == 2
    referenced = [json.dumps(s) for s in subnet_group["SubnetIds"]]
    assert len(referenced) == 2
    assert all(any(subnet in ref for subnet in isolated) for ref in referenced)


def test_database_enforces_tls_and_generated_credentials(dev: Synthesized) -> None:
    # Given the dev stage's data template
    template = dev.template(dev.stacks.data)
    # Then the parameter group forces TLS, and the password is generated into Secrets Manager
    template.has_resource_properties("AWS::RDS::DBParameterGroup", {"Parameters": {"rds.force_ssl": "1"}})
    template.has_resource_properties(
        "AWS::SecretsManager::Secret",
        {
            "GenerateSecretString": Match.object_like({"GenerateStringKey": "password"}),
        },
    )
    instance = only(dev.template_json(dev.stacks.data), "AWS::RDS::DBInstance")
    assert "resolve:secretsmanager" in json.dumps(instance["MasterUserPassword"])
    assert instance["BackupRetentionPeriod"] >= 1


def test_database_accepts_connections_only_from_runtime_security_groups(dev: Synthesized) -> None:
    # Given every ingress rule on the database security group, in every stack
    data = dev.template_json(dev.stacks.data)
    db_group = next(k for k, r in resources(data, "AWS::EC2::SecurityGroup").items() if "Database" in k)
    rules = []
    for stack in dev.stacks.all():
        for r in resources(dev.template_json(stack), "AWS::EC2::SecurityGroupIngress").values():
            if db_group in json.dumps(r["Properties"]["GroupId"]):
                rules.append(r["Properties"])
    inline = resources(data, "AWS::EC2::SecurityGroup")[db_group]["Properties"].get("SecurityGroupIngress", [])
    # Then there are rules (the runtimes need it) and every one names a source security group, never a CIDR
    assert inline == []
    assert len(rules) >= 7  # migrate, emu, listener, plan, batch, finalize, reconcile, web
    assert all("SourceSecurityGroupId" in rule and "CidrIp" not in rule for rule in rules)


def test_queue_is_high_throughput_fifo_with_fifo_dlq_and_redrive(dev: Synthesized) -> None:
    # Given the live lane's two queues
    queues = resources(dev.template_json(dev.stacks.data), "AWS::SQS::Queue")
    main = next(r for k, r in queues.items() if k.startswith("SyncQueue"))
    dlq_id = next(k for k in queues if k.startswith("SyncDeadLetter"))
    dlq = queues[dlq_id]["Properties"]
    props = main["Properties"]
    topo = dev.config.topology
    # Then both are FIFO and encrypted, the main one in high-throughput mode redriving to the DLQ
    assert props["FifoQueue"] is True and dlq["FifoQueue"] is True
    assert props["DeduplicationScope"] == "messageGroup"
    assert props["FifoThroughputLimit"] == "perMessageGroupId"
    assert props["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True
    assert props["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": topo.max_receive_count,
    }
    assert props["QueueName"].endswith(topology.QUEUE_NAME) and dlq["QueueName"].endswith(topology.DLQ_NAME)


def test_visibility_timeout_is_at_least_six_times_emu_timeout(dev: Synthesized) -> None:
    # Given the main queue and the deployed Emu function
    queues = resources(dev.template_json(dev.stacks.data), "AWS::SQS::Queue")
    for marker, lane in (("SyncQueue", "live"), ("SyncBulkQueue", "bulk")):
        main = next(r["Properties"] for k, r in queues.items() if k.startswith(marker))
        emu = function_by_handler(dev.template_json(dev.stacks.emu), topology.EMU_HANDLER, lane=lane)
        # Then each lane's queue gives its Emu six attempts' worth of time before a message reappears
        assert main["VisibilityTimeout"] == dev.config.topology.lane(lane).visibility_timeout_seconds  # type: ignore[arg-type]
        assert main["VisibilityTimeout"] >= 6 * emu["Timeout"]


def test_queues_refuse_plain_http(dev: Synthesized) -> None:
    # Given the queue policies
    policies = resources(dev.template_json(dev.stacks.data), "AWS::SQS::QueuePolicy").values()
    # Then each denies requests without TLS
    statements = [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]
    assert len(statements) == 4  # both lanes' queues and DLQs
    assert all(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
    )


def test_schema_custom_resource_runs_migrations_after_the_database(
    dev: Synthesized, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the data stack
    data = dev.template_json(dev.stacks.data)
    schema = next(iter(resources(data, "Custom::RefarchSchema").values()))
    migrate = function_by_handler(data, topology.MIGRATE_HANDLER)
    database_id = next(iter(resources(data, "AWS::RDS::DBInstance")))
    # Then the resource seeds as configured and waits for the database
    assert schema["Properties"]["SeedRows"] == str(dev.config.seed_rows)
    assert database_id in schema["DependsOn"]
    # And its MigrationsHash is the hash of the migration files: a changed or added migration changes
    # the resource's properties, which is what makes CloudFormation run the migrations again
    assert schema["Properties"]["MigrationsHash"] == data_stack.migrations_hash()
    migrations = tmp_path / "refarch" / "db" / "migrations"
    shutil.copytree(data_stack.PROJECT_ROOT / "refarch" / "db" / "migrations", migrations)
    monkeypatch.setattr(data_stack, "PROJECT_ROOT", tmp_path)
    assert data_stack.migrations_hash() == schema["Properties"]["MigrationsHash"]
    first = sorted(migrations.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- changed\n")
    changed = data_stack.migrations_hash()
    assert changed != schema["Properties"]["MigrationsHash"]
    (migrations / "9999_added.sql").write_text("SELECT 1;\n")
    assert data_stack.migrations_hash() not in (changed, schema["Properties"]["MigrationsHash"])
    assert migrate["VpcConfig"]["SubnetIds"], "the migration runs inside the VPC to reach the database"
