"""What a runtime (Lambda or container) needs to reach the system: environment + grants, from one config.

Every runtime gets exactly the settings and permissions for the parts it uses, named the way
`refarch.settings.Settings` reads them. Secrets travel as ARNs and are read at cold start, so
no secret value is ever in an environment variable or a template.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, Literal

from aws_cdk import Annotations, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from cdk_app.config import SearchConfig
from cdk_app.constructs.lane_queues import Lanes
from refarch.bedrock import foundation_model_arn
from refarch.lanes.topology import LaneName
from refarch.settings import DLQ_URL_VARIABLES, QUEUE_URL_VARIABLES

DepthReading = Literal["queues", "queues_and_dead_letters"]
"""What a runtime may read of the lanes besides sending: `queues`, each lane's queue depth (is anything
still queued?); `queues_and_dead_letters`, each lane's queue and DLQ depths and queue age (status displays)."""


# On each lane's DLQ, for `refarch dlq` and the page's dead letters: receive and make visible again (list),
# delete (discard), start or find SQS's message-move task (redrive), read the ARN and depth.
DEAD_LETTER_ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:StartMessageMoveTask",
    "sqs:ListMessageMoveTasks",
)


class RuntimeAccess(Construct):
    """The database, the API key secrets and the lanes' queues, handed out per runtime with least privilege."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        search: SearchConfig,
        database: rds.IDatabaseInstance,
        database_secret: secretsmanager.ISecret,
        lanes: Lanes,
        pinecone_host: str | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.search = search
        self.database = database
        self.database_secret = database_secret
        self.lanes = lanes
        self.pinecone_host = pinecone_host
        # The operator creates these before the first deploy; importing by name keeps values out of CDK.
        # A stage on Bedrock references no OpenAI secret at all (nothing to create, nothing granted).
        self.openai_secret = (
            secretsmanager.Secret.from_secret_name_v2(self, "OpenAiApiKey", search.openai_secret_name)
            if search.openai_access
            else None
        )
        self.pinecone_secret = (
            secretsmanager.Secret.from_secret_name_v2(self, "PineconeApiKey", search.pinecone_secret_name)
            if search.pinecone_access
            else None
        )

    def attach(
        self,
        *,
        grantee: iam.IGrantable,
        connections: ec2.IConnectable,
        add_environment: Callable[[str, str], Any],
        search: bool = False,
        embeds: bool = True,
        rerank: bool = False,
        send_to: Collection[LaneName] = (),
        read_depths: DepthReading | None = None,
        act_on_dead_letters: bool = False,
    ) -> None:
        """Give one runtime the database, and optionally search (embedder + index) and the lanes it uses.

        `embeds`: with search, whether it calls the embedder (Emu, web) or only builds it to name a
        generation's model (re-index, reconcile): only the first may invoke Bedrock models;
        `rerank`: it reranks search results (when the stage configures a rerank model);
        `send_to`: the lanes whose queues it may send to; `read_depths`: which depths it may read
        (DepthReading), never receive, delete or send; `act_on_dead_letters`: list, redrive and discard
        each lane's dead letters (refarch.lanes.dead_letters).
        """
        # The rule lands in the runtime's stack (allow_to), so the data stack never depends on it.
        connections.connections.allow_to_default_port(self.database, "Postgres from the runtime")
        for group in connections.connections.security_groups:
            Annotations.of(group).acknowledge_warning(
                "@aws-cdk/aws-ec2:ipv4IgnoreEgressRule",
                "The runtime's group already allows all outbound traffic; only the database's ingress rule matters.",
            )
        self.database_secret.grant_read(grantee)
        env = {
            "REFARCH_DATABASE_SECRET_ARN": self.database_secret.secret_arn,
            "REFARCH_VECTOR_BACKEND": self.search.vector_backend,
            # The table every runtime syncs, searches or shows (a definition shipped in the code).
            "REFARCH_SOURCE": self.search.source,
        }
        if search:
            env.update(self._grant_search(grantee, embeds=embeds))
        if rerank and self.search.rerank_model:
            env.update(self._grant_rerank(grantee))
        for lane in self.lanes.values():
            if lane.name in send_to:
                lane.queue.grant_send_messages(grantee)
                env[QUEUE_URL_VARIABLES[lane.name]] = lane.queue.queue_url
        if read_depths:
            # Only GetQueueAttributes (the depths): every lane's queue, then (if asked) every DLQ.
            watched = [(lane.queue, QUEUE_URL_VARIABLES[lane.name]) for lane in self.lanes.values()]
            if read_depths == "queues_and_dead_letters":
                watched += [(lane.dead_letter_queue, DLQ_URL_VARIABLES[lane.name]) for lane in self.lanes.values()]
            for queue, name in watched:
                queue.grant(grantee, "sqs:GetQueueAttributes")
                env[name] = queue.queue_url
        if act_on_dead_letters:
            env.update(self._grant_dead_letters(grantee))
        if read_depths == "queues_and_dead_letters":
            # The age of each queue's oldest message exists only as a CloudWatch metric. CloudWatch
            # cannot scope metric reads to a resource, so this one action is granted on "*".
            iam.Grant.add_to_principal(grantee=grantee, actions=["cloudwatch:GetMetricStatistics"], resource_arns=["*"])
        for name, value in env.items():
            add_environment(name, value)

    def _grant_dead_letters(self, grantee: iam.IGrantable) -> dict[str, str]:
        """What listing (receive, then visible again), discarding (delete) and redriving need on each DLQ, and
        sending to the lane's queue: SQS's message-move task needs these on its source and destination, and
        so does the same move made with single calls where an SQS API has no move task (moto's server)."""
        env: dict[str, str] = {}
        for lane in self.lanes.values():
            lane.dead_letter_queue.grant(grantee, *DEAD_LETTER_ACTIONS)
            lane.queue.grant(grantee, "sqs:SendMessage", "sqs:GetQueueAttributes")
            env[QUEUE_URL_VARIABLES[lane.name]] = lane.queue.queue_url
            env[DLQ_URL_VARIABLES[lane.name]] = lane.dead_letter_queue.queue_url
        return env

    def _grant_search(self, grantee: iam.IGrantable, *, embeds: bool) -> dict[str, str]:
        env: dict[str, str] = {"REFARCH_EMBEDDER": self.search.embedder}
        if self.openai_secret is not None:
            self.openai_secret.grant_read(grantee)
            env.update(
                {
                    "REFARCH_OPENAI_SECRET_ARN": self.openai_secret.secret_arn,
                    "REFARCH_OPENAI_MODEL": self.search.openai_model,
                    "REFARCH_OPENAI_DIMENSIONS": str(self.search.openai_dimensions),
                }
            )
        model_arns = self.search.bedrock_model_arns(Stack.of(self).region)
        if model_arns and embeds:
            # InvokeModel on the embedding models' ARNs only (the streaming variant is never used).
            iam.Grant.add_to_principal(grantee=grantee, actions=["bedrock:InvokeModel"], resource_arns=model_arns)
        if self.search.embedder == "bedrock":
            env.update(
                {
                    "REFARCH_BEDROCK_MODEL": self.search.bedrock_model,
                    "REFARCH_BEDROCK_DIMENSIONS": str(self.search.bedrock_dimensions),
                    "REFARCH_BEDROCK_CONCURRENCY": str(self.search.bedrock_concurrency),
                }
            )
        if self.pinecone_secret is not None:
            self.pinecone_secret.grant_read(grantee)
            env["REFARCH_PINECONE_SECRET_ARN"] = self.pinecone_secret.secret_arn
            env["PINECONE_INDEX_NAME"] = self.search.pinecone_index_name
            # The stage's own namespace: what Emu writes, reconcile compares and gc empties is this stage's.
            env["REFARCH_PINECONE_NAMESPACE"] = self.search.pinecone_namespace
            if self.pinecone_host:
                env["PINECONE_HOST"] = self.pinecone_host
        return env

    def _grant_rerank(self, grantee: iam.IGrantable) -> dict[str, str]:
        assert self.search.rerank_model is not None
        model_arn = foundation_model_arn(Stack.of(self).region, self.search.rerank_model)
        # The Rerank API (bedrock-agent-runtime) invokes the model on the caller's behalf: it needs
        # bedrock:Rerank, which takes no resource (IAM's service reference lists none), and
        # bedrock:InvokeModel on the rerank model's ARN.
        iam.Grant.add_to_principal(grantee=grantee, actions=["bedrock:Rerank"], resource_arns=["*"])
        iam.Grant.add_to_principal(grantee=grantee, actions=["bedrock:InvokeModel"], resource_arns=[model_arn])
        return {"REFARCH_RERANK_MODEL": self.search.rerank_model}
