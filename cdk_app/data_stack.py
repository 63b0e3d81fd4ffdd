"""Data: the Postgres database (schema migrated on every deploy) and both lanes' sync queues with their DLQs."""

from __future__ import annotations

import hashlib
from typing import Any

from aws_cdk import CfnOutput, CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from aws_cdk import custom_resources as cr
from constructs import Construct

from cdk_app.config import StageConfig
from cdk_app.constructs.lambda_code import PROJECT_ROOT, lambda_code
from cdk_app.constructs.lane_queues import LaneQueues, Lanes, lane_id_prefix
from cdk_app.constructs.python_function import PythonFunction
from cdk_app.constructs.runtime_access import RuntimeAccess
from cdk_app.nag import acknowledge, acknowledge_provider_framework
from refarch.db.roles import RUNTIME_ROLES
from refarch.lanes import topology
from refarch.source.definition import builtin_path

# A pinned minor version: upgrades are a reviewed change, not a surprise (minor patches still auto-apply).
POSTGRES_VERSION = rds.PostgresEngineVersion.VER_16_13
DATABASE_NAME = "refarch"
DATABASE_ADMIN = "refarch_admin"
# Each lane's (queue, dead-letter queue) as the stack outputs describe them to an operator.
QUEUE_OUTPUT_DESCRIPTIONS: dict[topology.LaneName, tuple[str, str]] = {
    "live": (
        "The live lane's FIFO sync queue",
        "Messages that failed maxReceiveCount times, with Emu's logged reason",
    ),
    "bulk": (
        "The bulk lane's standard queue (bootstrap, repairs, large backlogs)",
        "Bulk messages that failed maxReceiveCount times (one of their products failed: last_error)",
    ),
}


def migrations_hash() -> str:
    """A hash of the migration files: when it changes, the schema resource updates and migrations run."""
    digest = hashlib.sha256()
    for path in sorted((PROJECT_ROOT / "refarch" / "db" / "migrations").glob("*.sql")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def source_definition_hash(source: str) -> str:
    """A hash of the stage's source definition file: any edit (the text, metadata, page or keyword columns,
    chunking) changes the schema resource, so the deploy applies it (refarch.source.capture.apply)."""
    return hashlib.sha256(builtin_path(source).read_bytes()).hexdigest()[:16]


class SyncQueues(Construct):
    """Each lane's queue with its dead-letter queue (docs/emu.md), as `lanes`.

    Live lane: the high-throughput FIFO queue the outbox relay fills. Bulk lane: a standard queue
    for bootstrap ranges, repairs and large backlogs, many products per message.
    """

    def __init__(self, scope: Construct, id_: str, *, stage: str, topo: topology.Topology) -> None:
        super().__init__(scope, id_)
        self.lanes: Lanes = {
            name: self._lane_queues(topo.lane(name), stage=stage, max_receive_count=topo.max_receive_count)
            for name in topology.LANE_NAMES
        }

    def _lane_queues(self, lane: topology.Lane, *, stage: str, max_receive_count: int) -> LaneQueues:
        prefix = lane_id_prefix(lane.name)
        # A standard queue leaves the FIFO properties out (None, not False): FifoQueue cannot change
        # without replacing the queue, so its template stays as it was.
        dead_letter_queue = sqs.Queue(
            self,
            f"{prefix}DeadLetterQueue",
            queue_name=f"{stage}-{lane.dlq_name}",
            fifo=lane.fifo or None,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        queue = sqs.Queue(
            self,
            f"{prefix}Queue",
            queue_name=f"{stage}-{lane.queue_name}",
            fifo=lane.fifo or None,
            # High-throughput FIFO: ordering and deduplication per product (message group), not per queue.
            deduplication_scope=sqs.DeduplicationScope.MESSAGE_GROUP if lane.fifo else None,
            fifo_throughput_limit=sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID if lane.fifo else None,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(lane.visibility_timeout_seconds),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letter_queue, max_receive_count=max_receive_count),
        )
        return LaneQueues(lane=lane, queue=queue, dead_letter_queue=dead_letter_queue)


class DataStack(Stack):
    """RDS Postgres 16 in isolated subnets (TLS enforced, encrypted, generated credentials) and the sync queues."""

    def __init__(self, scope: Construct, id_: str, *, config: StageConfig, vpc: ec2.IVpc, **kwargs: Any) -> None:
        super().__init__(scope, id_, **kwargs)
        engine = rds.DatabaseInstanceEngine.postgres(version=POSTGRES_VERSION)
        parameters = rds.ParameterGroup(
            self,
            "Parameters",
            engine=engine,
            description="refarch: TLS required for every connection",
            parameters={"rds.force_ssl": "1"},
        )
        instance_identifier = f"refarch-{config.name}"
        # Created here (not by RDS) so the exported Postgres log has a retention period.
        postgres_logs = logs.LogGroup(
            self,
            "PostgresLogs",
            log_group_name=f"/aws/rds/instance/{instance_identifier}/postgresql",
            retention=config.log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # Every secret names the application database: a secret without `dbname` means `postgres`.
        self._admin_secret = admin_secret = rds.DatabaseSecret(
            self,
            "DatabaseSecret",
            username=DATABASE_ADMIN,
            dbname=DATABASE_NAME,
            secret_name=f"{config.stack_prefix}/database",
        )
        self.database = rds.DatabaseInstance(
            self,
            "Database",
            instance_identifier=instance_identifier,
            engine=engine,
            instance_type=ec2.InstanceType(config.db_instance_type),
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            publicly_accessible=False,
            database_name=DATABASE_NAME,
            credentials=rds.Credentials.from_secret(admin_secret),
            parameter_group=parameters,
            storage_type=rds.StorageType.GP3,
            allocated_storage=config.db_allocated_storage_gb,
            max_allocated_storage=config.db_max_allocated_storage_gb,
            storage_encrypted=True,
            multi_az=config.db_multi_az,
            backup_retention=Duration.days(config.db_backup_retention_days),
            deletion_protection=config.protect_data,
            removal_policy=RemovalPolicy.SNAPSHOT if config.protect_data else RemovalPolicy.DESTROY,
            copy_tags_to_snapshot=True,
            cloudwatch_logs_exports=["postgresql"],
        )
        self.database.node.add_dependency(postgres_logs)
        assert self.database.secret is not None  # from_secret attaches the admin secret to the instance
        # The admin credentials: only the migrate custom resource reads them.
        self.database_secret = self.database.secret
        # Each runtime logs in as its own database role (migration 0005) with its own generated secret.
        self._runtime_logins = {
            runtime: rds.DatabaseSecret(
                self,
                f"DatabaseLogin{runtime.capitalize()}",
                username=role,
                dbname=DATABASE_NAME,
                secret_name=f"{config.stack_prefix}/database/{runtime}",
            )
            for runtime, role in RUNTIME_ROLES.items()
        }
        # Attached: Secrets Manager adds the instance's host and port to each secret.
        self.runtime_database_secrets: dict[str, secretsmanager.ISecret] = {
            runtime: login.attach(self.database) for runtime, login in self._runtime_logins.items()
        }

        self.lanes = SyncQueues(self, "Sync", stage=config.name, topo=config.topology).lanes

        self._add_schema_migration(config, vpc)

        CfnOutput(
            self,
            "DatabaseSecretArn",
            value=self.database_secret.secret_arn,
            description="Secrets Manager secret with the database admin credentials (migrations only)",
        )
        for lane in self.lanes.values():
            queue_description, dead_letter_description = QUEUE_OUTPUT_DESCRIPTIONS[lane.name]
            prefix = lane_id_prefix(lane.name)
            CfnOutput(self, f"{prefix}QueueUrl", value=lane.queue.queue_url, description=queue_description)
            CfnOutput(
                self,
                f"{prefix}DeadLetterQueueUrl",
                value=lane.dead_letter_queue.queue_url,
                description=dead_letter_description,
            )
        self._acknowledge_findings(config)

    def _add_schema_migration(self, config: StageConfig, vpc: ec2.IVpc) -> None:
        """A custom resource that migrates (and optionally seeds) the database on every deploy that changes it."""
        migrate = PythonFunction(
            self,
            "Migrate",
            code=lambda_code(),
            handler=topology.MIGRATE_HANDLER,
            description="Custom resource: apply database migrations (advisory-locked, idempotent), seed if asked",
            timeout=Duration.minutes(10),
            log_retention=config.log_retention,
            vpc=vpc,
        )
        RuntimeAccess(
            self,
            "MigrateAccess",
            search=config.search,
            database=self.database,
            database_secret=self.database_secret,
            lanes=self.lanes,
        ).attach(
            grantee=migrate.function, connections=migrate.function, add_environment=migrate.function.add_environment
        )
        # It turns each runtime's login on with the password from that runtime's secret.
        for secret in self.runtime_database_secrets.values():
            secret.grant_read(migrate.function)
        migrate.function.add_environment(
            "REFARCH_DATABASE_ROLE_SECRET_ARNS",
            self.to_json_string({runtime: s.secret_arn for runtime, s in self.runtime_database_secrets.items()}),
        )
        # With the pgvector backend it creates the vector table, sized for the embedder.
        migrate.function.add_environment("REFARCH_VECTOR_DIMENSIONS", str(config.search.dimension))
        provider = cr.Provider(
            self,
            "SchemaProvider",
            on_event_handler=migrate.function,
            log_group=logs.LogGroup(
                self, "SchemaProviderLogs", retention=config.log_retention, removal_policy=RemovalPolicy.DESTROY
            ),
        )
        self.schema = CustomResource(
            self,
            "Schema",
            service_token=provider.service_token,
            resource_type="Custom::RefarchSchema",
            properties={
                "MigrationsHash": migrations_hash(),
                "SeedRows": str(config.seed_rows),
                # The source definition the stage deploys: an edited one re-runs the resource, which applies
                # it (its capture, views and keyword index; a metadata backfill; the new text for re-index).
                "Source": config.search.source,
                "SourceDefinitionHash": source_definition_hash(config.search.source),
                # A new or replaced runtime secret re-runs the resource, which applies its password.
                "RuntimeSecrets": [s.secret_arn for s in self.runtime_database_secrets.values()],
            },
        )
        # The instance (and the security group rule letting the function in) must exist first.
        self.schema.node.add_dependency(self.database)
        acknowledge_provider_framework(provider, migrate.function, "migration")

    def _acknowledge_findings(self, config: StageConfig) -> None:
        acknowledge(
            self.database,
            "AwsSolutions-RDS11",
            "Postgres listens on its default port; only the runtimes' security groups can reach it "
            "and it sits in isolated subnets, so a non-default port adds no protection.",
        )
        rotation_reason = (
            "No automatic rotation: the runtimes read the credentials once per process "
            "(refarch.secrets) and would fail to open new connections after a rotation until they "
            "restart. Turn rotation on once they re-read the secret on an authentication failure."
        )
        for secret in (self._admin_secret, *self._runtime_logins.values()):
            acknowledge(secret, "AwsSolutions-SMG4", rotation_reason)
        if not config.db_multi_az:
            acknowledge(
                self.database,
                "AwsSolutions-RDS3",
                f"Stage {config.name} runs a single-AZ database to keep idle cost low; prod is multi-AZ.",
            )
        if not config.protect_data:
            acknowledge(
                self.database,
                "AwsSolutions-RDS10",
                f"Stage {config.name} is disposable: `cdk destroy` must remove it; prod has deletion protection.",
            )
