"""Pinecone index: a custom resource that creates the serverless index before anything writes to it."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import custom_resources as cr
from constructs import Construct

from cdk_app.config import StageConfig
from cdk_app.constructs.lambda_code import lambda_code
from cdk_app.constructs.python_function import PythonFunction
from cdk_app.nag import acknowledge_provider_framework
from refarch.lanes import topology


class PineconeIndexStack(Stack):
    """Creates the index if missing (cosine, this region, the embedder's dimension) and exports its host."""

    def __init__(self, scope: Construct, id_: str, *, config: StageConfig, **kwargs: Any) -> None:
        super().__init__(scope, id_, **kwargs)
        search = config.search
        api_key = secretsmanager.Secret.from_secret_name_v2(self, "PineconeApiKey", search.pinecone_secret_name)
        create_index = PythonFunction(
            self,
            "CreateIndex",
            code=lambda_code(),
            handler=topology.PINECONE_INDEX_HANDLER,
            description="Custom resource: create the Pinecone serverless index if missing; never deletes it",
            timeout=Duration.minutes(5),
            log_retention=config.log_retention,
        )
        api_key.grant_read(create_index.function)
        provider = cr.Provider(
            self,
            "IndexProvider",
            on_event_handler=create_index.function,
            log_group=logs.LogGroup(
                self, "IndexProviderLogs", retention=config.log_retention, removal_policy=RemovalPolicy.DESTROY
            ),
        )
        index = CustomResource(
            self,
            "Index",
            service_token=provider.service_token,
            resource_type="Custom::PineconeIndex",
            properties={
                "IndexName": search.pinecone_index_name,
                "Dimension": str(search.dimension),
                "Region": self.region,
                "ApiKeySecretArn": api_key.secret_arn,
            },
        )
        self.host = index.get_att_string("Host")
        CfnOutput(self, "PineconeHost", value=self.host, description="The index's data-plane host")
        acknowledge_provider_framework(provider, create_index.function, "index")
