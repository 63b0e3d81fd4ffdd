"""Network: a VPC over two AZs with public, private-with-egress and isolated subnets."""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk_app.config import StageConfig

VPC_CIDR = "10.0.0.0/16"


class NetworkStack(Stack):
    """Public subnets hold the ALB and NAT; services and Lambdas run in private subnets; the database is isolated."""

    def __init__(self, scope: Construct, id_: str, *, config: StageConfig, **kwargs: Any) -> None:
        super().__init__(scope, id_, **kwargs)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(VPC_CIDR),
            max_azs=2,
            nat_gateways=config.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="services", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22),
                ec2.SubnetConfiguration(name="database", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24),
            ],
            # Image layers pulled from ECR come from S3: the gateway endpoint is free and spares the NAT.
            gateway_endpoints={"S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)},
        )
        flow_log_group = logs.LogGroup(
            self,
            "FlowLogs",
            retention=config.log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            # Rejected traffic is what an operator looks for; ALL would log every accepted packet at a cost.
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
        if config.vpc_endpoints:
            endpoints_security_group = ec2.SecurityGroup(
                self,
                "EndpointsSecurityGroup",
                vpc=self.vpc,
                allow_all_outbound=False,
                description="HTTPS to the AWS service endpoints from inside the VPC",
            )
            # The literal CIDR (not the VPC's token) lets cdk-nag verify the rule is not open to the world.
            endpoints_security_group.add_ingress_rule(ec2.Peer.ipv4(VPC_CIDR), ec2.Port.tcp(443), "HTTPS from the VPC")
            services = [
                ("Sqs", ec2.InterfaceVpcEndpointAwsService.SQS),
                ("SecretsManager", ec2.InterfaceVpcEndpointAwsService.SECRETS_MANAGER),
                ("Logs", ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS),
            ]
            # Embedding (and reranking) calls stay inside the VPC too when the stage uses Bedrock.
            if config.search.embedder == "bedrock" or config.search.keep_bedrock_models:
                services.append(("BedrockRuntime", ec2.InterfaceVpcEndpointAwsService.BEDROCK_RUNTIME))
            if config.search.rerank_model:
                services.append(("BedrockAgentRuntime", ec2.InterfaceVpcEndpointAwsService.BEDROCK_AGENT_RUNTIME))
            for name, service in services:
                self.vpc.add_interface_endpoint(
                    name,
                    service=service,
                    security_groups=[endpoints_security_group],
                    open=False,
                    subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
                )
