"""Re-index (docs/reindex.md): a deploy that configures another embedder or vector index builds a generation
and switches to it.

The reindex Lambda runs the steps with the admin login; the Reindex state machine drives them
(start, fill through the bootstrap state machine, poll, switch); a custom resource starts an
execution on every deploy that changes the embedder or the vector index; a daily rule drops retired
generations.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import ArnFormat, CfnOutput, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import custom_resources as cr
from constructs import Construct, IConstruct

from cdk_app.config import StageConfig
from cdk_app.constructs.lambda_code import lambda_code
from cdk_app.constructs.lane_queues import Lanes
from cdk_app.constructs.python_function import PythonFunction
from cdk_app.constructs.runtime_access import RuntimeAccess
from cdk_app.constructs.state_machines import ReindexStateMachine
from cdk_app.nag import acknowledge, acknowledge_aws_custom_resource, acknowledge_invoker, finding_text
from refarch.generations.placement import Placement
from refarch.lanes import topology
from refarch.source.definition import load


def configured_generation(config: StageConfig) -> dict[str, Any]:
    """The embedder, the vector index and the source's embedded text (its template and chunking) every
    runtime of the stage is configured with, as the re-index start step compares them with the active
    generation's (refarch.generations.reindex_flow; the text as the migrate resource recorded it)."""
    search = config.search
    placement = (
        Placement("pinecone", search.pinecone_index_name, search.pinecone_namespace)
        if search.vector_backend == "pinecone"
        else Placement("pgvector")
    )
    return {
        "embedder": search.embedder_spec.as_json(),
        "placement": placement.as_json(),
        "source_text": load(search.source).fingerprint("text"),
    }


class ReindexStack(Stack):
    """The reindex Lambda, the Reindex state machine, its start on deploy, and the daily gc."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: StageConfig,
        vpc: ec2.IVpc,
        database: rds.IDatabaseInstance,
        admin_secret: secretsmanager.ISecret,
        lanes: Lanes,
        bootstrap_name_export: str,
        schema: IConstruct,
        pinecone_host: str | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        self.config = config
        # Imported by an export of its name, so the grant on its executions has a stable name (see below).
        bootstrap = sfn.StateMachine.from_state_machine_name(self, "Bootstrap", Fn.import_value(bootstrap_name_export))
        self.function = PythonFunction(
            self,
            "Steps",
            code=lambda_code(),
            handler=topology.REINDEX_HANDLER,
            description="Re-index steps (start, progress, switch, rollback, abort, gc) with the admin database login",
            # Starting a generation of another dimension on Pinecone waits for its new index (minutes).
            timeout=Duration.minutes(15),
            log_retention=config.log_retention,
            vpc=vpc,
        ).function
        # The admin login, as the migrate step: creating a generation creates its pgvector table.
        # It builds the new generation's embedder and index (search), and watches both lanes' depths.
        RuntimeAccess(
            self,
            "Access",
            search=config.search,
            database=database,
            database_secret=admin_secret,
            lanes=lanes,
            pinecone_host=pinecone_host,
        ).attach(
            grantee=self.function,
            connections=self.function,
            add_environment=self.function.add_environment,
            search=True,
            # It creates a generation's index for the model's dimension; Emu does the embedding.
            embeds=False,
            read_depths="queues",
        )
        reindex = ReindexStateMachine(
            self,
            "Reindex",
            reindex=self.function,
            bootstrap=bootstrap,
            poll=Duration.seconds(config.reindex_poll_seconds),
            timeout=Duration.hours(config.reindex_timeout_hours),
            log_retention=config.log_retention,
        )
        self.state_machine = reindex.state_machine
        self._start_on_deploy(schema)
        events.Rule(
            self,
            "GcSchedule",
            description="Daily: drop retired index generations past the grace period (their index and ledger rows)",
            schedule=events.Schedule.rate(Duration.days(1)),
            targets=[
                targets.LambdaFunction(
                    self.function, event=events.RuleTargetInput.from_object({"action": "gc"}), retry_attempts=2
                )
            ],
        )
        CfnOutput(
            self,
            "ReindexStateMachineArn",
            value=self.state_machine.state_machine_arn,
            description="Start an execution (input {}) to build and switch to the configured embedder and index",
        )
        CfnOutput(
            self,
            "ReindexFunctionName",
            value=self.function.function_name,
            description='Invoke with {"action": "rollback"}, "abort", "gc" or "progress" (docs/reindex.md)',
        )
        acknowledge_invoker(self.state_machine, "reindex", (self.function,))
        acknowledge(
            self.state_machine.role,
            "AwsSolutions-IAM5",
            "Waiting for a bootstrap run (.sync) needs DescribeExecution and StopExecution on that state "
            "machine's executions, whose names are generated per run.",
            findings=(f"Resource::{finding_text(self, _executions_of(bootstrap))}",),
        )
        acknowledge_aws_custom_resource(self)

    def _start_on_deploy(self, schema: IConstruct) -> None:
        """Start an execution when the stack is created and whenever a deploy changes the embedder, the index
        or the source's embedded text (a new template or chunking).

        All three are in the call, so CloudFormation updates the resource (and starts an
        execution) exactly when one of them changes. Fire and forget: the deploy does not wait for the
        re-index; on a first deploy the execution finds nothing to do.
        """
        start = cr.AwsSdkCall(
            service="SFN",
            action="startExecution",
            parameters={
                "stateMachineArn": self.state_machine.state_machine_arn,
                "input": json.dumps(configured_generation(self.config)),
            },
            physical_resource_id=cr.PhysicalResourceId.of("reindex-on-deploy"),
            output_paths=["executionArn"],
        )
        starter = cr.AwsCustomResource(
            self,
            "StartReindex",
            resource_type="Custom::StartReindex",
            on_create=start,
            on_update=start,
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [
                    iam.PolicyStatement(
                        actions=["states:StartExecution"], resources=[self.state_machine.state_machine_arn]
                    )
                ]
            ),
            install_latest_aws_sdk=False,
            log_group=logs.LogGroup(
                self, "StartReindexLogs", retention=self.config.log_retention, removal_policy=RemovalPolicy.DESTROY
            ),
        )
        # The schema exists, and the function runs the new settings, before the execution starts.
        starter.node.add_dependency(schema, self.function)


def _executions_of(state_machine: sfn.IStateMachine) -> str:
    """The ARNs of a state machine's executions, as the .sync integration grants them (aws-stepfunctions-tasks)."""
    stack = Stack.of(state_machine)
    name = stack.split_arn(state_machine.state_machine_arn, ArnFormat.COLON_RESOURCE_NAME).resource_name
    return stack.format_arn(
        service="states", resource="execution", arn_format=ArnFormat.COLON_RESOURCE_NAME, resource_name=f"{name}*"
    )
