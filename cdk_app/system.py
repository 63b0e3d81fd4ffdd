"""The whole system as CDK stacks for one stage, wired together and checked by cdk-nag."""

from __future__ import annotations

import os
from dataclasses import dataclass

from aws_cdk import App, Environment, Stack, Tags
from aws_cdk import aws_ecs as ecs

from cdk_app.config import StageConfig
from cdk_app.constructs.python_function import PythonFunction
from cdk_app.data_stack import DataStack
from cdk_app.edge_stack import EDGE_REGION, EdgeStack
from cdk_app.emu_stack import EmuStack
from cdk_app.frontend_stack import FrontendStack
from cdk_app.monitoring_stack import MonitoringStack
from cdk_app.nag import check_app
from cdk_app.network_stack import NetworkStack
from cdk_app.pelican_stack import PelicanStack
from cdk_app.pinecone_index_stack import PineconeIndexStack
from cdk_app.reindex_stack import ReindexStack
from refarch.observability import stage_namespace


@dataclass(frozen=True)
class SystemStacks:
    """The stacks of one stage, by role."""

    network: NetworkStack
    data: DataStack
    pinecone_index: PineconeIndexStack | None
    emu: EmuStack
    pelican: PelicanStack
    reindex: ReindexStack
    edge: EdgeStack | None
    frontend: FrontendStack
    monitoring: MonitoringStack

    def all(self) -> list[Stack]:
        """Every stack, in deployment order."""
        stacks: list[Stack | None] = [
            self.network,
            self.data,
            self.pinecone_index,
            self.emu,
            self.pelican,
            self.reindex,
            self.edge,
            self.frontend,
            self.monitoring,
        ]
        return [stack for stack in stacks if stack is not None]


def build_system(app: App, config: StageConfig) -> SystemStacks:
    """Add every stack of the stage to `app` and turn on cdk-nag."""
    # The region is part of the stage; the account comes from the CLI's credentials when there are
    # any (without them the stacks are account-agnostic, which is enough to synthesize and lint).
    env = Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=config.region)
    prefix = config.stack_prefix

    network = NetworkStack(
        app,
        f"{prefix}-Network",
        config=config,
        env=env,
        description="refarch network: VPC over 2 AZs (public, private, isolated), flow logs",
    )
    data = DataStack(
        app,
        f"{prefix}-Data",
        config=config,
        vpc=network.vpc,
        env=env,
        description="refarch data: RDS Postgres 16 + schema migration, live (FIFO) and bulk sync queues + DLQs",
    )
    pinecone_index = None
    if config.search.vector_backend == "pinecone":
        pinecone_index = PineconeIndexStack(
            app,
            f"{prefix}-PineconeIndex",
            config=config,
            env=env,
            description="refarch Pinecone index: creates the serverless index (custom resource) if missing",
        )
    pinecone_host = pinecone_index.host if pinecone_index else None
    emu = EmuStack(
        app,
        f"{prefix}-Emu",
        config=config,
        vpc=network.vpc,
        database=data.database,
        database_secret=data.runtime_database_secrets["emu"],
        lanes=data.lanes,
        pinecone_host=pinecone_host,
        env=env,
        description="refarch Emu: live (FIFO) and bulk lanes -> Lambdas that embed products into the vector index",
    )
    pelican = PelicanStack(
        app,
        f"{prefix}-Pelican",
        config=config,
        vpc=network.vpc,
        database=data.database,
        database_secret=data.runtime_database_secrets["pelican"],
        lanes=data.lanes,
        schema=data.schema,
        pinecone_host=pinecone_host,
        env=env,
        description="refarch Pelican: outbox listener (Fargate), bootstrap state machine, weekly reconcile",
    )
    # Emu is in place before the first bootstrap fills the queue.
    pelican.add_dependency(emu)
    reindex = ReindexStack(
        app,
        f"{prefix}-Reindex",
        config=config,
        vpc=network.vpc,
        database=data.database,
        admin_secret=data.database_secret,
        lanes=data.lanes,
        bootstrap_name_export=pelican.bootstrap_name_export,
        schema=data.schema,
        pinecone_host=pinecone_host,
        env=env,
        description="refarch re-index: a changed embedder builds its index generation and switches; daily gc",
    )
    # It imports the bootstrap state machine's name, which only an export of the Pelican stack provides.
    reindex.add_dependency(pelican)
    edge = None
    if config.custom_domain is None:
        # CloudFront's web ACL must live in us-east-1; CDK passes its ARN across regions (an SSM
        # parameter read by a custom resource) when the stage is elsewhere, as a plain export when not.
        edge = EdgeStack(
            app,
            f"{prefix}-Edge",
            config=config,
            env=Environment(account=env.account, region=EDGE_REGION),
            cross_region_references=True,
            description="refarch edge: the WAF web ACL of the CloudFront distribution (us-east-1)",
        )
    frontend = FrontendStack(
        app,
        f"{prefix}-Frontend",
        config=config,
        vpc=network.vpc,
        database=data.database,
        database_secret=data.runtime_database_secrets["web"],
        lanes=data.lanes,
        pinecone_host=pinecone_host,
        cloudfront_web_acl_arn=edge.web_acl.arn if edge else None,
        cross_region_references=edge is not None,
        env=env,
        description="refarch frontend: Flask on Fargate behind an ALB, HTTPS via CloudFront or your domain",
    )
    monitoring = MonitoringStack(
        app,
        f"{prefix}-Monitoring",
        config=config,
        lanes=emu.lanes,
        listener=pelican.listener,
        load_balancer=frontend.load_balancer,
        database=data.database,
        state_machines={
            "Bootstrap": pelican.state_machine,
            "Reconcile": pelican.reconcile_state_machine,
            "Reindex": reindex.state_machine,
        },
        env=env,
        description="refarch monitoring: dashboard and alarms (DLQ, queue age, Emu errors, listener, "
        "state machine failures)",
    )
    stacks = SystemStacks(
        network=network,
        data=data,
        pinecone_index=pinecone_index,
        emu=emu,
        pelican=pelican,
        reindex=reindex,
        edge=edge,
        frontend=frontend,
        monitoring=monitoring,
    )
    for stack in stacks.all():
        Tags.of(stack).add("project", "refarch")
        Tags.of(stack).add("stage", config.name)
        write_metrics_to_stage_namespace(stack, config.name)
    check_app(app)
    return stacks


def write_metrics_to_stage_namespace(stack: Stack, stage: str) -> None:
    """Tell every runtime of the stack (our functions and containers) to write its metrics to the stage's
    namespace, the one the stage's alarms and dashboard read: two stages in one account never mix metrics."""
    namespace = stage_namespace(stage)
    for construct in stack.node.find_all():
        if isinstance(construct, PythonFunction):
            construct.function.add_environment("POWERTOOLS_METRICS_NAMESPACE", namespace)
        elif isinstance(construct, ecs.ContainerDefinition):
            construct.add_environment("POWERTOOLS_METRICS_NAMESPACE", namespace)
