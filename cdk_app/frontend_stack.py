"""Frontend: the Flask app on Fargate behind an ALB, served over HTTPS (CloudFront, or your own domain)."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_ecs_patterns as ecs_patterns
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_wafv2 as wafv2
from aws_cdk import custom_resources as cr
from constructs import Construct

from cdk_app.config import StageConfig
from cdk_app.constructs.container_image import app_image, runtime_platform
from cdk_app.constructs.lane_queues import Lanes
from cdk_app.constructs.runtime_access import RuntimeAccess
from cdk_app.constructs.web_acl import SiteWebAcl
from cdk_app.nag import acknowledge, acknowledge_aws_custom_resource, acknowledge_task_execution_role
from refarch import serving

# Workers, threads and gunicorn's timeouts come from the one statement of the latency budget (refarch.serving).
WEB_COMMAND = serving.web_command()
WEB_PORT = 8000
HEALTH_CHECK_PATH = "/healthz"
CLOUDFRONT_PREFIX_LIST = "com.amazonaws.global.cloudfront.origin-facing"


class FrontendStack(Stack):
    """Search is public; editing signs in with the edit password kept in Secrets Manager."""

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
        cloudfront_web_acl_arn: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        self.config = config
        self.cloudfront_web_acl_arn = cloudfront_web_acl_arn
        self.edit_password = secretsmanager.Secret(
            self,
            "EditPassword",
            secret_name=f"{config.stack_prefix}/edit-password",
            description="Password that unlocks editing on the refarch web page (read it to sign in)",
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=24, exclude_punctuation=True),
        )
        session_secret = secretsmanager.Secret(
            self,
            "SessionSecret",
            description="Signs the web app's session cookies (shared by every web task)",
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=64, exclude_punctuation=True),
        )
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            # CloudFront standard logging writes with ACLs; the bucket owner still owns every object.
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(90))],
            removal_policy=RemovalPolicy.RETAIN if config.protect_data else RemovalPolicy.DESTROY,
            auto_delete_objects=not config.protect_data,
        )

        self.service = self._web_service(config, vpc)
        container = self.service.task_definition.default_container
        assert container is not None
        container.add_environment("AWS_REGION", self.region)
        container.add_environment("REFARCH_EDIT_PASSWORD_SECRET_ARN", self.edit_password.secret_arn)
        container.add_environment("REFARCH_SESSION_SECRET_ARN", session_secret.secret_arn)
        # Who appends to X-Forwarded-For before the app: CloudFront and the ALB, or the ALB alone.
        container.add_environment("REFARCH_PROXY_HOPS", "1" if config.custom_domain else "2")
        # Each worker's query-vector cache, in bytes, from the task's memory (docs/web.md, "Memory").
        container.add_environment(
            "REFARCH_QUERY_CACHE_BYTES",
            str(serving.query_cache_bytes(config.web_memory_mb, workers=serving.WEB_WORKERS)),
        )
        task_role = self.service.task_definition.task_role
        self.edit_password.grant_read(task_role)
        session_secret.grant_read(task_role)
        # Search and editing, both lanes' queue depths and ages for the status header, and acting on their dead
        # letters (editors on the page, `refarch dlq` in the task): never receiving from the lanes' queues.
        RuntimeAccess(
            self,
            "Access",
            search=config.search,
            database=database,
            database_secret=database_secret,
            lanes=lanes,
            pinecone_host=pinecone_host,
        ).attach(
            grantee=task_role,
            connections=self.service.service,
            add_environment=container.add_environment,
            search=True,
            rerank=True,
            read_depths="queues_and_dead_letters",
            act_on_dead_letters=True,
        )
        acknowledge(
            task_role,
            "AwsSolutions-IAM5",
            "cloudwatch:GetMetricStatistics (read-only) cannot be scoped to a resource; the status header "
            "reads each lane's ApproximateAgeOfOldestMessage with it."
            + (
                " bedrock:Rerank takes no resource either; which model it runs is scoped by bedrock:InvokeModel "
                "on the rerank model's ARN only."
                if config.search.rerank_model
                else ""
            ),
            findings=("Resource::*",),
        )

        self.load_balancer = self.service.load_balancer
        self.load_balancer.log_access_logs(self.access_logs, prefix="alb")
        self.load_balancer.set_attribute("routing.http.drop_invalid_header_fields.enabled", "true")
        # Longer than CloudFront's origin read timeout, shorter than gunicorn's keep-alive (refarch.serving).
        self.load_balancer.set_attribute("idle_timeout.timeout_seconds", str(serving.ALB_IDLE_TIMEOUT_SECONDS))
        if config.custom_domain:
            self.site_url = f"https://{config.custom_domain.domain_name}"
            self._web_acl_on_the_load_balancer(config)
        else:
            self.site_url = "https://" + self._cloudfront_in_front(config).distribution_domain_name
        CfnOutput(self, "SiteUrl", value=self.site_url, description="The search page")
        CfnOutput(
            self,
            "EditPasswordSecretArn",
            value=self.edit_password.secret_arn,
            description="Read this secret for the password that unlocks editing",
        )
        self._acknowledge_findings(config)

    def _web_service(self, config: StageConfig, vpc: ec2.IVpc) -> ecs_patterns.ApplicationLoadBalancedFargateService:
        cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED
            if config.container_insights
            else ecs.ContainerInsights.DISABLED,
        )
        domain = config.custom_domain
        https: dict[str, Any] = {}
        if domain:
            https = {
                "protocol": elbv2.ApplicationProtocol.HTTPS,
                "certificate": acm.Certificate.from_certificate_arn(self, "Certificate", domain.certificate_arn),
                "domain_name": domain.domain_name,
                "domain_zone": route53.HostedZone.from_hosted_zone_attributes(
                    self, "Zone", hosted_zone_id=domain.hosted_zone_id, zone_name=domain.hosted_zone_name
                ),
                "redirect_http": True,
                "ssl_policy": elbv2.SslPolicy.RECOMMENDED_TLS,
            }
        service = ecs_patterns.ApplicationLoadBalancedFargateService(
            self,
            "Web",
            cluster=cluster,
            cpu=config.web_cpu,
            memory_limit_mib=config.web_memory_mb,
            desired_count=config.web_desired_count,
            runtime_platform=runtime_platform(config.container_architecture),
            task_image_options=ecs_patterns.ApplicationLoadBalancedTaskImageOptions(
                image=app_image(config.container_architecture),
                command=WEB_COMMAND,
                container_name="web",
                container_port=WEB_PORT,
                log_driver=ecs.LogDrivers.aws_logs(
                    stream_prefix="web",
                    log_group=logs.LogGroup(
                        self, "WebLogs", retention=config.log_retention, removal_policy=RemovalPolicy.DESTROY
                    ),
                ),
            ),
            # Without a domain the ALB is internal: CloudFront reaches it through a VPC origin, and
            # nothing else can, not even another CloudFront distribution (rule added below).
            public_load_balancer=domain is not None,
            open_listener=domain is not None,
            task_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            min_healthy_percent=100,
            health_check_grace_period=Duration.seconds(60),
            **https,
        )
        service.target_group.configure_health_check(
            path=HEALTH_CHECK_PATH,
            healthy_http_codes="200",
            interval=Duration.seconds(30),
            timeout=Duration.seconds(10),
        )
        # The health check is the load balancer's: its checks reach the targets directly, past the listener's
        # rules, while a viewer's /healthz (through CloudFront, or the public ALB) gets a 404 from the ALB itself,
        # so nobody outside can hold the health threads each web worker keeps for them (web/health_lane.py).
        service.listener.add_action(
            "HealthCheckNotPublic",
            priority=1,
            conditions=[elbv2.ListenerCondition.path_patterns([HEALTH_CHECK_PATH])],
            action=elbv2.ListenerAction.fixed_response(
                404, content_type="application/json", message_body='{"error": "not found"}'
            ),
        )
        # Short deregistration: requests are short, and deploys should not wait five minutes per task.
        service.target_group.set_attribute("deregistration_delay.timeout_seconds", "30")
        if domain:
            acknowledge(
                service.load_balancer,
                "AwsSolutions-EC23",
                "With a custom domain the ALB is the public entry point: 443 for the site, 80 only to "
                "redirect to HTTPS.",
            )
        return service

    def _web_acl_on_the_load_balancer(self, config: StageConfig) -> None:
        """The public ALB (custom domain) gets its own regional web ACL: the same rules CloudFront's has."""
        self.web_acl = SiteWebAcl(
            self,
            "SiteWebAcl",
            name=f"{config.stack_prefix}-alb",
            waf_scope="REGIONAL",
            requests_per_window=config.waf_requests_per_5_minutes,
        )
        wafv2.CfnWebACLAssociation(
            self,
            "SiteWebAclAssociation",
            resource_arn=self.load_balancer.load_balancer_arn,
            web_acl_arn=self.web_acl.arn,
        )

    def _cloudfront_in_front(self, config: StageConfig) -> cloudfront.Distribution:
        """HTTPS on CloudFront's domain; CloudFront reaches the internal ALB through a VPC origin.

        The ALB has no public address; its security group admits CloudFront's origin-facing
        prefix list (one of the two sources AWS documents for VPC origins).
        """
        prefix_list = cr.AwsCustomResource(
            self,
            "CloudFrontPrefixList",
            resource_type="Custom::CloudFrontOriginPrefixList",
            on_update=cr.AwsSdkCall(
                service="EC2",
                action="describeManagedPrefixLists",
                parameters={"Filters": [{"Name": "prefix-list-name", "Values": [CLOUDFRONT_PREFIX_LIST]}]},
                physical_resource_id=cr.PhysicalResourceId.of(CLOUDFRONT_PREFIX_LIST),
                output_paths=["PrefixLists.0.PrefixListId"],
            ),
            policy=cr.AwsCustomResourcePolicy.from_sdk_calls(resources=cr.AwsCustomResourcePolicy.ANY_RESOURCE),
            install_latest_aws_sdk=False,
            log_group=logs.LogGroup(
                self, "CloudFrontPrefixListLogs", retention=config.log_retention, removal_policy=RemovalPolicy.DESTROY
            ),
        )
        self.load_balancer.connections.allow_from(
            ec2.Peer.prefix_list(prefix_list.get_response_field("PrefixLists.0.PrefixListId")),
            ec2.Port.tcp(80),
            "HTTP from CloudFront only",
        )
        acknowledge(
            prefix_list,
            "AwsSolutions-IAM5",
            "ec2:DescribeManagedPrefixLists supports no resource-level permissions (read-only lookup).",
            findings=("Resource::*",),
        )
        acknowledge_aws_custom_resource(self)
        distribution = cloudfront.Distribution(
            self,
            "Cdn",
            comment=f"refarch {config.name}: HTTPS in front of the web ALB",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.VpcOrigin.with_application_load_balancer(
                    self.load_balancer,
                    protocol_policy=cloudfront.OriginProtocolPolicy.HTTP_ONLY,
                    # The search budget plus the lexical answer fit many times over (refarch.serving).
                    read_timeout=Duration.seconds(serving.ORIGIN_READ_TIMEOUT_SECONDS),
                ),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                # Every page is dynamic (search results, sync state): pass everything through.
                cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
            ),
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            enable_logging=True,
            log_bucket=self.access_logs,
            log_file_prefix="cloudfront/",
            # The WAF web ACL (rate-based rule + common rule set) from the us-east-1 edge stack.
            web_acl_id=self.cloudfront_web_acl_arn,
        )
        acknowledge(
            distribution,
            "AwsSolutions-CFR1",
            "A public product search has no country restrictions; add geo restrictions in a fork that needs them.",
        )
        acknowledge(
            distribution,
            "AwsSolutions-CFR4",
            "The default *.cloudfront.net certificate does not allow choosing the minimum TLS version; "
            "configure custom_domain (ACM certificate, TLS 1.2+ policy) to control it.",
        )
        acknowledge(
            distribution,
            "AwsSolutions-CFR5",
            "CloudFront reaches the internal ALB over HTTP through a VPC origin (private, inside the "
            "VPC) because the ALB has no certificate without a domain.",
        )
        return distribution

    def _acknowledge_findings(self, config: StageConfig) -> None:
        acknowledge(
            self.access_logs,
            "AwsSolutions-S1",
            "This bucket receives the access logs; logging its own access would recurse.",
        )
        for secret, why in (
            (self.edit_password, "a shared sign-in password the operator reads from the console"),
            (self.node.find_child("SessionSecret"), "rotating it signs every user out"),
        ):
            acknowledge(secret, "AwsSolutions-SMG4", f"No automatic rotation: {why}; rotate it deliberately.")
        task_definition = self.service.task_definition
        acknowledge_task_execution_role(task_definition)
        acknowledge(
            task_definition,
            "AwsSolutions-ECS2",
            "The environment holds only non-secret settings (model, index, URLs, secret ARNs); secret "
            "values are read from Secrets Manager at start.",
        )
        if not config.container_insights:
            acknowledge(
                self.service.cluster,
                "AwsSolutions-ECS4",
                f"Container Insights is off in stage {config.name} to keep idle cost low; the ALB and "
                "service metrics on the dashboard remain.",
            )
