"""Emu: the SQS-triggered Lambda that embeds changed products and updates the vector index."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_app.config import StageConfig
from cdk_app.constructs.lambda_code import lambda_code
from cdk_app.constructs.python_function import PythonFunction
from cdk_app.constructs.runtime_access import RuntimeAccess
from refarch import topology


class EmuStack(Stack):
    """Emu's scaling is its reserved concurrency plus the event source's maximum concurrency (refarch.topology)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: StageConfig,
        vpc: ec2.IVpc,
        database: rds.IDatabaseInstance,
        database_secret: secretsmanager.ISecret,
        queue: sqs.IQueue,
        pinecone_host: str | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        topo = config.topology
        emu = PythonFunction(
            self,
            "Emu",
            code=lambda_code(),
            handler=topology.EMU_HANDLER,
            description="Emu: re-read changed products, embed them (one call per batch), update the vector index",
            timeout=Duration.seconds(topo.emu_timeout_seconds),
            memory_size=topo.emu_memory_mb,
            reserved_concurrency=topo.emu_reserved_concurrency,
            log_retention=config.log_retention,
            vpc=vpc,
        )
        self.function = emu.function
        RuntimeAccess(
            self,
            "Access",
            search=config.search,
            database=database,
            database_secret=database_secret,
            pinecone_host=pinecone_host,
        ).attach(
            grantee=self.function, connections=self.function, add_environment=self.function.add_environment, search=True
        )
        # FIFO event sources take no batching window; order within a product is kept by the message group.
        self.function.add_event_source(
            event_sources.SqsEventSource(
                queue,
                batch_size=topo.emu_batch_size,
                report_batch_item_failures=True,
                max_concurrency=topo.emu_max_concurrency,
            )
        )
