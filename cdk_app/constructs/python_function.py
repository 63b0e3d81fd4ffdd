"""A Lambda function running one of our handler strings: arm64, Python 3.12, X-Ray, own log group."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk_app.constructs.lambda_code import ARCHITECTURE, RUNTIME
from cdk_app.nag import acknowledge
from refarch.observability import SERVICE


class PythonFunction(Construct):
    """One handler from `refarch.lanes.topology` as a Lambda function, with the settings every function shares."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        code: lambda_.Code,
        handler: str,
        description: str,
        timeout: Duration,
        log_retention: logs.RetentionDays,
        memory_size: int = 512,
        environment: dict[str, str] | None = None,
        vpc: ec2.IVpc | None = None,
        reserved_concurrency: int | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            code=code,
            handler=handler,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            memory_size=memory_size,
            timeout=timeout,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            reserved_concurrent_executions=reserved_concurrency,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS) if vpc else None,
            environment={
                "POWERTOOLS_SERVICE_NAME": SERVICE,
                "POWERTOOLS_LOG_LEVEL": "INFO",
                **(environment or {}),
            },
        )
        self._acknowledge_findings(in_vpc=vpc is not None)

    def _acknowledge_findings(self, *, in_vpc: bool) -> None:
        role = self.function.role
        assert role is not None
        managed = ["AWSLambdaBasicExecutionRole"] + (["AWSLambdaVPCAccessExecutionRole"] if in_vpc else [])
        acknowledge(
            role,
            "AwsSolutions-IAM4",
            "AWS-maintained minimum policies for Lambda logging and, in a VPC, its network interfaces.",
            findings=tuple(f"Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/{name}" for name in managed),
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "X-Ray's PutTraceSegments and PutTelemetryRecords support no resource-level permissions.",
            findings=("Resource::*",),
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "The bundle's wheels are built for Python 3.12 (lambdas/requirements.txt); the runtime "
            "moves together with them, not on its own.",
        )
