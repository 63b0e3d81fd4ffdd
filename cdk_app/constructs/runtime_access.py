"""What a runtime (Lambda or container) needs to reach the system: environment + grants, from one config.

Every runtime gets exactly the settings and permissions for the parts it uses, named the way
`refarch.settings.Settings` reads them. Secrets travel as ARNs and are read at cold start, so
no secret value is ever in an environment variable or a template.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_cdk import Annotations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from cdk_app.config import SearchConfig


class RuntimeAccess(Construct):
    """The database, the API key secrets and the queue, handed out per runtime with least privilege."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        search: SearchConfig,
        database: rds.IDatabaseInstance,
        database_secret: secretsmanager.ISecret,
        queue: sqs.IQueue | None = None,
        dead_letter_queue: sqs.IQueue | None = None,
        bulk_queue: sqs.IQueue | None = None,
        bulk_dead_letter_queue: sqs.IQueue | None = None,
        pinecone_host: str | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.search = search
        self.database = database
        self.database_secret = database_secret
        self.queue = queue
        self.dead_letter_queue = dead_letter_queue
        self.bulk_queue = bulk_queue
        self.bulk_dead_letter_queue = bulk_dead_letter_queue
        self.pinecone_host = pinecone_host
        # The operator creates these before the first deploy; importing by name keeps values out of CDK.
        self.openai_secret = secretsmanager.Secret.from_secret_name_v2(self, "OpenAiApiKey", search.openai_secret_name)
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
        send_to_queue: bool = False,
        send_to_bulk_queue: bool = False,
        read_queue_depth: bool = False,
        read_lane_depths: bool = False,
    ) -> None:
        """Give one runtime the database, and optionally search (embedder + index) and either lane's queue.

        `read_queue_depth`: both lanes' queues and DLQs, and their age metric (status displays);
        `read_lane_depths`: only the two queues' message counts (is anything still queued?).
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
        }
        if search:
            env.update(self._grant_search(grantee))
        if send_to_queue:
            if self.queue is None:
                raise ValueError("send_to_queue needs the queue")
            self.queue.grant_send_messages(grantee)
            env["REFARCH_QUEUE_URL"] = self.queue.queue_url
        if send_to_bulk_queue:
            if self.bulk_queue is None:
                raise ValueError("send_to_bulk_queue needs the bulk queue")
            self.bulk_queue.grant_send_messages(grantee)
            env["REFARCH_BULK_QUEUE_URL"] = self.bulk_queue.queue_url
        if read_queue_depth or read_lane_depths:
            # Only GetQueueAttributes (the depths); no receive, delete or send.
            watched = [(self.queue, "REFARCH_QUEUE_URL"), (self.bulk_queue, "REFARCH_BULK_QUEUE_URL")]
            if read_queue_depth:
                watched += [
                    (self.dead_letter_queue, "REFARCH_DLQ_URL"),
                    (self.bulk_dead_letter_queue, "REFARCH_BULK_DLQ_URL"),
                ]
            for queue, name in watched:
                if queue is None:
                    raise ValueError(f"reading queue depths needs the queue behind {name}")
                queue.grant(grantee, "sqs:GetQueueAttributes")
                env[name] = queue.queue_url
        if read_queue_depth:
            # The age of each queue's oldest message exists only as a CloudWatch metric. CloudWatch
            # cannot scope metric reads to a resource, so this one action is granted on "*".
            iam.Grant.add_to_principal(grantee=grantee, actions=["cloudwatch:GetMetricStatistics"], resource_arns=["*"])
        for name, value in env.items():
            add_environment(name, value)

    def _grant_search(self, grantee: iam.IGrantable) -> dict[str, str]:
        self.openai_secret.grant_read(grantee)
        env = {
            "REFARCH_EMBEDDER": "openai",
            "REFARCH_OPENAI_SECRET_ARN": self.openai_secret.secret_arn,
            "REFARCH_OPENAI_MODEL": self.search.openai_model,
            "REFARCH_OPENAI_DIMENSIONS": str(self.search.openai_dimensions),
        }
        if self.pinecone_secret is not None:
            self.pinecone_secret.grant_read(grantee)
            env["REFARCH_PINECONE_SECRET_ARN"] = self.pinecone_secret.secret_arn
            env["PINECONE_INDEX_NAME"] = self.search.pinecone_index_name
            # The stage's own namespace: what Emu writes, reconcile compares and gc empties is this stage's.
            env["REFARCH_PINECONE_NAMESPACE"] = self.search.pinecone_namespace
            if self.pinecone_host:
                env["PINECONE_HOST"] = self.pinecone_host
        return env
