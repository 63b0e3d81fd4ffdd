"""Pelican: the outbox listener (Fargate), the bootstrap state machine, and the weekly reconcile."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import custom_resources as cr
from constructs import Construct, IConstruct

from cdk_app.config import StageConfig
from cdk_app.constructs.container_image import app_image, runtime_platform
from cdk_app.constructs.lambda_code import lambda_code
from cdk_app.constructs.lane_queues import Lanes
from cdk_app.constructs.python_function import PythonFunction
from cdk_app.constructs.runtime_access import RuntimeAccess
from cdk_app.constructs.state_machines import BootstrapStateMachine, ReconcileStateMachine
from cdk_app.nag import (
    acknowledge,
    acknowledge_aws_custom_resource,
    acknowledge_invoker,
    acknowledge_task_execution_role,
)
from refarch.lanes import topology

LISTENER_COMMAND = ["refarch", "pelican", "listen"]
LISTENER_HEALTH_COMMAND = ["refarch", "pelican", "health", "--max-age", "60"]


class PelicanStack(Stack):
    """Change capture: the listener relays the outbox to SQS; the bootstrap and reconcile catch up everything else."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: StageConfig,
        vpc: ec2.IVpc,
        database: rds.IDatabaseInstance,
        database_secret: secretsmanager.ISecret,
        lanes: Lanes,
        schema: IConstruct,
        pinecone_host: str | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        self.config = config
        self.vpc = vpc
        self.access = RuntimeAccess(
            self,
            "Access",
            search=config.search,
            database=database,
            database_secret=database_secret,
            lanes=lanes,
            pinecone_host=pinecone_host,
        )
        self.code = lambda_code()
        self._add_listener()
        self._add_bootstrap(schema)
        self._add_reconcile()

    def _add_listener(self) -> None:
        config = self.config
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=self.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED
            if config.container_insights
            else ecs.ContainerInsights.DISABLED,
        )
        task = ecs.FargateTaskDefinition(
            self,
            "ListenerTask",
            cpu=config.listener_cpu,
            memory_limit_mib=config.listener_memory_mb,
            runtime_platform=runtime_platform(config.container_architecture),
        )
        container = task.add_container(
            "listener",
            image=app_image(config.container_architecture),
            command=LISTENER_COMMAND,
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix="listener",
                log_group=logs.LogGroup(
                    self, "ListenerLogs", retention=config.log_retention, removal_policy=RemovalPolicy.DESTROY
                ),
            ),
            health_check=ecs.HealthCheck(
                command=["CMD", *LISTENER_HEALTH_COMMAND],
                interval=Duration.seconds(30),
                timeout=Duration.seconds(10),
                retries=3,
                start_period=Duration.seconds(60),
            ),
            environment={"AWS_REGION": self.region},
        )
        self.listener = ecs.FargateService(
            self,
            "Listener",
            cluster=self.cluster,
            task_definition=task,
            desired_count=1,
            # Two listeners at once are safe (rows are claimed with SKIP LOCKED): start the new one first.
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        )
        self.access.attach(
            grantee=task.task_role,
            connections=self.listener,
            add_environment=container.add_environment,
            # Changes go to the live lane; a backlog above Topology.relay_bulk_threshold to the bulk lane.
            send_to=topology.LANE_NAMES,
        )
        acknowledge_task_execution_role(task)
        acknowledge(
            task,
            "AwsSolutions-ECS2",
            "The environment holds only non-secret settings (queue URL, region, secret ARNs); secret "
            "values are read from Secrets Manager at start.",
        )
        if not config.container_insights:
            acknowledge(
                self.cluster,
                "AwsSolutions-ECS4",
                f"Container Insights is off in stage {config.name} to keep idle cost low; the service's "
                "CPU and memory metrics and the listener alarm remain.",
            )

    def _function(self, id_: str, *, handler: str, description: str, timeout: Duration) -> lambda_.Function:
        return PythonFunction(
            self,
            id_,
            code=self.code,
            handler=handler,
            description=description,
            timeout=timeout,
            log_retention=self.config.log_retention,
            vpc=self.vpc,
        ).function

    def _attach(
        self, function: lambda_.Function, *, search: bool = False, send_to: Collection[topology.LaneName] = ()
    ) -> None:
        self.access.attach(
            grantee=function,
            connections=function,
            add_environment=function.add_environment,
            search=search,
            # Reconcile compares content hashes: it names the generations' models, never calls them.
            embeds=False,
            send_to=send_to,
        )

    def _add_bootstrap(self, schema: IConstruct) -> None:
        plan = self._function(
            "BootstrapPlan",
            handler=topology.BOOTSTRAP_PLAN_HANDLER,
            description="Bootstrap Plan: create or resume a run, split ids into ranges",
            timeout=Duration.minutes(5),
        )
        batch = self._function(
            "BootstrapBatch",
            handler=topology.BOOTSTRAP_BATCH_HANDLER,
            description="Bootstrap Batch: enqueue one id range on the bulk lane (100 products per message)",
            timeout=Duration.minutes(5),
        )
        finalize = self._function(
            "BootstrapFinalize",
            handler=topology.BOOTSTRAP_FINALIZE_HANDLER,
            description="Bootstrap Finalize: mark the run complete, or failed with a reason",
            timeout=Duration.minutes(1),
        )
        self._attach(plan)
        self._attach(batch, send_to=["bulk"])
        self._attach(finalize)
        bootstrap = BootstrapStateMachine(
            self,
            "Bootstrap",
            plan=plan,
            batch=batch,
            finalize=finalize,
            max_concurrency=self.config.topology.bootstrap_max_concurrency,
            busy_retry_seconds=self.config.topology.bootstrap_busy_retry_seconds,
            busy_retry_attempts=self.config.topology.bootstrap_busy_retry_attempts,
            log_retention=self.config.log_retention,
        )
        self.state_machine = bootstrap.state_machine
        # Started once, when the stack is created (after the schema exists); later runs are manual.
        first_run = cr.AwsCustomResource(
            self,
            "StartFirstBootstrap",
            resource_type="Custom::StartFirstBootstrap",
            on_create=cr.AwsSdkCall(
                service="SFN",
                action="startExecution",
                parameters={"stateMachineArn": self.state_machine.state_machine_arn, "input": "{}"},
                physical_resource_id=cr.PhysicalResourceId.of("first-bootstrap"),
                output_paths=["executionArn"],
            ),
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [
                    iam.PolicyStatement(
                        actions=["states:StartExecution"], resources=[self.state_machine.state_machine_arn]
                    )
                ]
            ),
            install_latest_aws_sdk=False,
            log_group=logs.LogGroup(
                self,
                "StartFirstBootstrapLogs",
                retention=self.config.log_retention,
                removal_policy=RemovalPolicy.DESTROY,
            ),
        )
        first_run.node.add_dependency(schema)
        CfnOutput(
            self,
            "BootstrapStateMachineArn",
            value=self.state_machine.state_machine_arn,
            description="Start an execution (input {}) to re-enqueue every product",
        )
        # Named, so the re-index stack's grant on its executions has a name cdk-nag can be told about.
        self.bootstrap_name_export = f"{self.config.stack_prefix}-BootstrapStateMachineName"
        CfnOutput(
            self,
            "BootstrapStateMachineName",
            value=self.state_machine.state_machine_name,
            export_name=self.bootstrap_name_export,
            description="The bootstrap state machine's name (the re-index state machine runs it)",
        )
        acknowledge_invoker(self.state_machine, "bootstrap", (plan, batch, finalize))
        acknowledge_aws_custom_resource(self)

    def _add_reconcile(self) -> None:
        plan = self._function(
            "ReconcilePlan",
            handler=topology.RECONCILE_PLAN_HANDLER,
            description="Reconcile Plan: split the id space into shards",
            timeout=Duration.minutes(1),
        )
        shard = self._function(
            "ReconcileShard",
            handler=topology.RECONCILE_SHARD_HANDLER,
            description="Reconcile Shard: compare one id shard in the database and the index; enqueue fixes",
            timeout=Duration.minutes(15),
        )
        finalize = self._function(
            "ReconcileFinalize",
            handler=topology.RECONCILE_FINALIZE_HANDLER,
            description="Reconcile Finalize: sum the shards' drift, publish the drift metrics",
            timeout=Duration.minutes(1),
        )
        self._attach(plan)
        # Repairs are bulk work: they go to the bulk lane only.
        self._attach(shard, search=True, send_to=["bulk"])
        self._attach(finalize)
        reconcile = ReconcileStateMachine(
            self,
            "Reconcile",
            plan=plan,
            shard=shard,
            finalize=finalize,
            max_concurrency=self.config.topology.reconcile_max_concurrency,
            log_retention=self.config.log_retention,
        )
        self.reconcile_state_machine = reconcile.state_machine
        events.Rule(
            self,
            "ReconcileSchedule",
            description="Weekly drift repair between the database and the vector index",
            schedule=events.Schedule.rate(Duration.days(self.config.reconcile_schedule_days)),
            targets=[
                targets.SfnStateMachine(
                    reconcile.state_machine,
                    input=events.RuleTargetInput.from_object({"repair": True}),
                    retry_attempts=2,
                )
            ],
        )
        CfnOutput(
            self,
            "ReconcileStateMachineArn",
            value=reconcile.state_machine.state_machine_arn,
            description='Start an execution (input {"repair": false} to only report) to compare database and index',
        )
        acknowledge_invoker(reconcile.state_machine, "reconcile", (plan, shard, finalize))
