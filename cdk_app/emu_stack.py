"""Emu: the SQS-triggered Lambda that embeds changed products and updates the vector index, once per lane."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from cdk_app.config import StageConfig
from cdk_app.constructs.lambda_code import lambda_code
from cdk_app.constructs.lane_queues import LaneQueues, Lanes, lane_id_prefix
from cdk_app.constructs.python_function import PythonFunction
from cdk_app.constructs.runtime_access import RuntimeAccess
from refarch.lanes import topology


class EmuLane(Construct):
    """One lane's Emu function: the shared handler, its own reserved concurrency, its own queue's event source.

    The event source grants the function receive/delete on its own queue only: each lane's
    function can read nothing else. The bulk lane's may also send to its own queue (work it had no
    time to start goes back as new messages).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        queues: LaneQueues,
        access: RuntimeAccess,
        log_retention: logs.RetentionDays,
        vpc: ec2.IVpc,
    ) -> None:
        super().__init__(scope, id_)
        lane = queues.lane
        self.queues = queues
        self.function: lambda_.Function = PythonFunction(
            self,
            "Function",
            code=lambda_code(),
            handler=topology.EMU_HANDLER,
            description=f"Emu ({lane.name} lane): re-read products, embed them in provider-sized chunks, "
            "update the vector index",
            timeout=Duration.seconds(lane.timeout_seconds),
            memory_size=lane.memory_mb,
            reserved_concurrency=lane.reserved_concurrency,
            log_retention=log_retention,
            vpc=vpc,
        ).function
        access.attach(
            grantee=self.function, connections=self.function, add_environment=self.function.add_environment, search=True
        )
        # The same handler for both lanes: the lane (its batch processor, its metrics) is configuration.
        self.function.add_environment("REFARCH_EMU_LANE", lane.name)
        if not lane.fifo:
            # Messages an invocation had no time to start go back as new messages (lambdas/emu.py).
            queues.queue.grant_send_messages(self.function)
        self.function.add_event_source(
            event_sources.SqsEventSource(
                queues.queue,
                batch_size=lane.batch_size,
                # FIFO event sources take no batching window; order within a product is kept by the group.
                max_batching_window=Duration.seconds(lane.batching_window_seconds)
                if lane.batching_window_seconds
                else None,
                report_batch_item_failures=True,
                max_concurrency=lane.max_concurrency,
            )
        )


class EmuStack(Stack):
    """One Emu function per lane; each lane scales by its own reserved concurrency (refarch.lanes.topology)."""

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
        pinecone_host: str | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        access = RuntimeAccess(
            self,
            "Access",
            search=config.search,
            database=database,
            database_secret=database_secret,
            lanes=lanes,
            pinecone_host=pinecone_host,
        )
        # Each deployed lane: its queues and the function consuming them (what monitoring watches).
        self.lanes: dict[topology.LaneName, EmuLane] = {
            name: EmuLane(
                self,
                f"Emu{lane_id_prefix(name)}",
                queues=queues,
                access=access,
                log_retention=config.log_retention,
                vpc=vpc,
            )
            for name, queues in lanes.items()
        }
