"""Emu, Pelican (listener, bootstrap, reconcile), the web frontend and monitoring, as synthesized."""

from __future__ import annotations

import json

import pytest

from refarch.lanes import topology
from tests.infra.conftest import Synthesized
from tests.infra.templates import (
    container,
    environment,
    event_source_of,
    function_by_handler,
    function_logical_id,
    only,
    resources,
    state_machine_definition,
    state_machine_id,
)

SECRET_ARN_SETTINGS = {"REFARCH_DATABASE_SECRET_ARN", "REFARCH_OPENAI_SECRET_ARN", "REFARCH_PINECONE_SECRET_ARN"}


@pytest.mark.parametrize("lane_name", ["live", "bulk"])
def test_emu_is_an_arm64_python_lambda_with_reserved_concurrency_in_the_vpc(dev: Synthesized, lane_name: str) -> None:
    # Given one lane's Emu function
    emu = function_by_handler(dev.template_json(dev.stacks.emu), topology.EMU_HANDLER, lane=lane_name)
    lane = dev.config.topology.lane(lane_name)  # type: ignore[arg-type]
    # Then runtime, architecture, scaling, tracing and networking are as the topology says
    assert emu["Runtime"] == "python3.12"
    assert emu["Architectures"] == ["arm64"]
    assert emu["ReservedConcurrentExecutions"] == lane.reserved_concurrency
    assert emu["Timeout"] == lane.timeout_seconds
    assert emu["MemorySize"] == lane.memory_mb
    assert emu["TracingConfig"] == {"Mode": "Active"}
    assert emu["VpcConfig"]["SubnetIds"] and emu["VpcConfig"]["SecurityGroupIds"]
    assert "LogGroup" in emu["LoggingConfig"]


def test_emu_event_source_reports_batch_item_failures(dev: Synthesized) -> None:
    # Given the live lane's event source mapping
    template = dev.template_json(dev.stacks.emu)
    mapping = event_source_of(template, function_logical_id(template, topology.EMU_HANDLER, lane="live"))
    live = dev.config.topology.live
    # Then partial failures are reported, batches and concurrency follow the topology, FIFO has no window
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == live.batch_size == 10
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": live.max_concurrency}
    assert "MaximumBatchingWindowInSeconds" not in mapping
    assert "SyncQueue" in json.dumps(mapping["EventSourceArn"])


def test_emu_environment_names_secrets_by_arn_and_sets_the_search_config(dev: Synthesized) -> None:
    # Given Emu's environment
    env = environment(function_by_handler(dev.template_json(dev.stacks.emu), topology.EMU_HANDLER, lane="live"))
    search = dev.config.search
    # Then the embedder and index come from the one config, and secrets are ARNs, not values
    assert env["REFARCH_EMBEDDER"] == "openai"
    assert env["REFARCH_OPENAI_MODEL"] == search.openai_model
    assert env["REFARCH_OPENAI_DIMENSIONS"] == str(search.openai_dimensions)
    assert env["REFARCH_VECTOR_BACKEND"] == "pinecone"
    assert env["PINECONE_INDEX_NAME"] == search.pinecone_index_name
    assert env["REFARCH_PINECONE_NAMESPACE"] == search.pinecone_namespace
    assert "PineconeIndex" in json.dumps(env["PINECONE_HOST"])
    assert env["POWERTOOLS_SERVICE_NAME"] == "refarch"
    assert set(env) >= SECRET_ARN_SETTINGS
    assert ":secret:" in json.dumps(env["REFARCH_OPENAI_SECRET_ARN"])
    assert "AWS_REGION" not in env  # reserved by Lambda, which sets it


def test_pinecone_index_resource_uses_the_embedder_dimension_and_region(dev: Synthesized) -> None:
    # Given the Pinecone index custom resource
    index = next(iter(resources(dev.template_json(dev.stacks.pinecone_index), "Custom::PineconeIndex").values()))
    props = index["Properties"]
    # Then it creates the configured index with the embedder's dimension in the stack's region
    assert props["IndexName"] == dev.config.search.pinecone_index_name
    assert props["Dimension"] == str(dev.config.search.openai_dimensions)
    assert props["Region"] == dev.config.region
    assert "pinecone-api-key" in json.dumps(props["ApiKeySecretArn"])
    function_by_handler(dev.template_json(dev.stacks.pinecone_index), topology.PINECONE_INDEX_HANDLER)


def test_bootstrap_state_machine_is_plan_map_finalize_with_bounded_concurrency(dev: Synthesized) -> None:
    # Given the bootstrap definition
    template = dev.template_json(dev.stacks.pelican)
    definition = state_machine_definition(template)
    states = definition["States"]

    def runs(state: dict, handler: str) -> bool:
        return state["Resource"] == f"<{function_logical_id(template, handler)}>"

    # Then Plan -> Map(Batch, max concurrency from the topology) -> Finalize, with the right handlers
    assert definition["StartAt"] == "Plan" and runs(states["Plan"], topology.BOOTSTRAP_PLAN_HANDLER)
    enqueue = states[states["Plan"]["Next"]]
    assert enqueue["Type"] == "Map"
    assert enqueue["MaxConcurrency"] == dev.config.topology.bootstrap_max_concurrency
    assert enqueue["ItemsPath"] == "$.ranges"
    batch = enqueue["ItemProcessor"]["States"]["Batch"]
    assert runs(batch, topology.BOOTSTRAP_BATCH_HANDLER)
    finalize = states[enqueue["Next"]]
    assert runs(finalize, topology.BOOTSTRAP_FINALIZE_HANDLER)
    assert finalize["Parameters"] == {"run_id.$": "$.run_id"}


def test_bootstrap_retries_lambda_errors_and_records_failures(dev: Synthesized) -> None:
    # Given the bootstrap definition
    template = dev.template_json(dev.stacks.pelican)
    states = state_machine_definition(template)["States"]
    enqueue = states["Enqueue ranges"]
    batch = enqueue["ItemProcessor"]["States"]["Batch"]
    # Then every task retries function errors, and Map/Finalize failures go to a Finalize call with the error
    for task in (states["Plan"], batch, states["Finalize"], states["Record failure"]):
        retried = {error for rule in task["Retry"] for error in rule["ErrorEquals"]}
        assert {"States.TaskFailed", "Lambda.ServiceException"} <= retried
    # And a range another worker holds is waited for (the rule ahead of the TaskFailed wildcard, which would match it)
    rules = [rule["ErrorEquals"] for rule in batch["Retry"]]
    busy = next(rule for rule in batch["Retry"] if rule["ErrorEquals"] == ["RangeBusyError"])
    assert rules.index(["RangeBusyError"]) < next(i for i, r in enumerate(rules) if "States.TaskFailed" in r)
    assert busy["IntervalSeconds"] == dev.config.topology.bootstrap_busy_retry_seconds
    assert busy["MaxAttempts"] == dev.config.topology.bootstrap_busy_retry_attempts
    for state in (enqueue, states["Finalize"]):
        assert state["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Record failure"}]
    record = states["Record failure"]
    assert record["Resource"] == f"<{function_logical_id(template, topology.BOOTSTRAP_FINALIZE_HANDLER)}>"
    assert record["Parameters"]["run_id.$"] == "$.run_id"
    assert "$.error.Cause" in record["Parameters"]["error.$"]
    assert states[record["Next"]]["Type"] == "Fail"
    assert states["Plan"]["Catch"][0]["Next"] == record["Next"]


def test_bootstrap_logs_traces_and_starts_once_after_the_schema(dev: Synthesized) -> None:
    # Given the state machine and its starter
    template = dev.template_json(dev.stacks.pelican)
    machine = template["Resources"][state_machine_id(template, "Bootstrap")]["Properties"]
    starter = next(iter(resources(template, "Custom::StartFirstBootstrap").values()))["Properties"]
    create_call = json.loads(render_create(starter["Create"]))
    manifest = json.loads((dev.outdir / "manifest.json").read_text())
    # Then logging is ALL, X-Ray is on, and the first execution starts on create only, after the data stack
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    assert machine["TracingConfiguration"] == {"Enabled": True}
    assert create_call["service"] == "SFN" and create_call["action"] == "startExecution"
    assert "Update" not in starter and "Delete" not in starter
    assert dev.stacks.data.stack_name in manifest["artifacts"][dev.stacks.pelican.stack_name]["dependencies"]


def render_create(value: object) -> str:
    """The AwsCustomResource `Create` property (an Fn::Join around the state machine ARN) as JSON text."""
    if isinstance(value, str):
        return value
    _, parts = value["Fn::Join"]  # type: ignore[index]
    return "".join(p if isinstance(p, str) else "ARN" for p in parts)


def test_listener_is_one_fargate_task_with_health_check_and_circuit_breaker(dev: Synthesized) -> None:
    # Given the Pelican stack
    template = dev.template_json(dev.stacks.pelican)
    service = only(template, "AWS::ECS::Service")
    listener = container(template, "listener")
    env = environment(listener)
    # Then one task runs `refarch pelican listen`, is health-checked, and rolls back a failed deploy
    assert service["DesiredCount"] == 1
    assert service["LaunchType"] == "FARGATE"
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
    assert listener["Command"] == ["refarch", "pelican", "listen"]
    assert listener["HealthCheck"]["Command"] == ["CMD", "refarch", "pelican", "health", "--max-age", "60"]
    assert "REFARCH_QUEUE_URL" in env and "REFARCH_DATABASE_SECRET_ARN" in env
    assert "ecr" in json.dumps(listener["Image"]) and "container-assets" in json.dumps(listener["Image"])


def test_reconcile_runs_weekly_as_a_fan_out_over_id_shards(dev: Synthesized) -> None:
    # Given the schedule rule and the reconcile state machine
    template = dev.template_json(dev.stacks.pelican)
    rule = only(template, "AWS::Events::Rule")
    definition = state_machine_definition(template, "Reconcile")
    states = definition["States"]

    def runs(state: dict, handler: str) -> bool:
        return state["Resource"] == f"<{function_logical_id(template, handler)}>"

    # Then the rule starts it (with repair) every seven days
    assert rule["ScheduleExpression"] == "rate(7 days)"
    target = rule["Targets"][0]
    assert target["Arn"] == {"Ref": state_machine_id(template, "Reconcile")}
    assert json.loads(target["Input"]) == {"repair": True}
    # And it runs Plan -> Map(Shard, the stage's concurrency) -> Finalize(the Map's results)
    assert definition["StartAt"] == "Plan" and runs(states["Plan"], topology.RECONCILE_PLAN_HANDLER)
    shards = states[states["Plan"]["Next"]]
    assert shards["Type"] == "Map" and shards["ItemsPath"] == "$.shards"
    assert shards["MaxConcurrency"] == dev.config.topology.reconcile_max_concurrency
    assert runs(shards["ItemProcessor"]["States"]["Shard"], topology.RECONCILE_SHARD_HANDLER)
    finalize = states[shards["Next"]]
    assert runs(finalize, topology.RECONCILE_FINALIZE_HANDLER)
    assert finalize["Parameters"] == {"results.$": "$.results"}


def test_web_runs_gunicorn_behind_the_alb_with_healthz(dev: Synthesized) -> None:
    # Given the frontend stack
    template = dev.template_json(dev.stacks.frontend)
    web = container(template, "web")
    env = environment(web)
    target_group = only(template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    service = only(template, "AWS::ECS::Service")
    # Then gunicorn serves the app factory (with a lane of its own for /healthz), the ALB checks /healthz,
    # and secrets arrive as ARNs
    assert web["Command"] == [
        "gunicorn",
        "--bind",
        "0.0.0.0:8000",
        "--workers",
        "2",
        "--threads",
        "4",
        "--worker-class",
        "web.health_lane.HealthLaneWorker",
        "--timeout",
        "30",
        "--keep-alive",
        "20",
        "web:create_app()",
    ]
    assert target_group["HealthCheckPath"] == "/healthz"
    # And a viewer's /healthz is answered by the ALB (404), never forwarded: the health threads are the ALB's
    rule = only(template, "AWS::ElasticLoadBalancingV2::ListenerRule")
    assert rule["Conditions"] == [{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/healthz"]}}]
    assert [(a["Type"], a["FixedResponseConfig"]["StatusCode"]) for a in rule["Actions"]] == [("fixed-response", "404")]
    assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert {
        "REFARCH_EDIT_PASSWORD_SECRET_ARN",
        "REFARCH_SESSION_SECRET_ARN",
        "REFARCH_DLQ_URL",
    } | SECRET_ARN_SETTINGS <= set(env)
    assert env["REFARCH_EMBEDDER"] == "openai"


def test_alb_accepts_only_cloudfront_which_serves_https(dev: Synthesized) -> None:
    # Given the frontend stack without a custom domain
    template = dev.template_json(dev.stacks.frontend)
    lb_group = only(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")["SecurityGroups"][0]["Fn::GetAtt"][0]
    inline = resources(template, "AWS::EC2::SecurityGroup")[lb_group]["Properties"].get("SecurityGroupIngress", [])
    ingress = [
        r["Properties"]
        for r in resources(template, "AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [lb_group, "GroupId"]}
    ]
    distribution = only(template, "AWS::CloudFront::Distribution")["DistributionConfig"]
    vpc_origin = only(template, "AWS::CloudFront::VpcOrigin")["VpcOriginEndpointConfig"]
    # Then the ALB is internal and CloudFront reaches it through a VPC origin
    assert only(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")["Scheme"] == "internal"
    assert vpc_origin["Arn"] == {"Ref": next(iter(resources(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")))}
    assert "VpcOriginConfig" in distribution["Origins"][0]
    # And the ALB's only way in is CloudFront's origin-facing prefix list, and viewers are sent to HTTPS
    assert inline == []
    assert len(ingress) == 1 and "SourcePrefixListId" in ingress[0] and "CidrIp" not in ingress[0]
    prefix_lookup = next(iter(resources(template, "Custom::CloudFrontOriginPrefixList").values()))
    assert "com.amazonaws.global.cloudfront.origin-facing" in json.dumps(prefix_lookup["Properties"])
    assert distribution["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    assert distribution["Logging"]["Prefix"] == "cloudfront/"


def test_custom_domain_serves_https_from_the_alb_without_cloudfront(variant: Synthesized) -> None:
    # Given the variant stage with its own domain and certificate
    template = variant.template_json(variant.stacks.frontend)
    listeners = [r["Properties"] for r in resources(template, "AWS::ElasticLoadBalancingV2::Listener").values()]
    https = [listener for listener in listeners if listener["Protocol"] == "HTTPS"]
    # Then the ALB terminates TLS with the certificate, redirects HTTP, and there is no distribution
    assert len(https) == 1
    assert https[0]["Certificates"] == [{"CertificateArn": variant.config.custom_domain.certificate_arn}]
    assert any(
        listener["Protocol"] == "HTTP" and listener["DefaultActions"][0]["Type"] == "redirect" for listener in listeners
    )
    assert resources(template, "AWS::CloudFront::Distribution") == {}
    assert resources(template, "AWS::Route53::RecordSet")
    # And the ALB is the public entry point
    assert only(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")["Scheme"] == "internet-facing"


def test_pgvector_stage_has_no_pinecone_index_or_settings(variant: Synthesized) -> None:
    # Given the pgvector variant
    emu_env = environment(
        function_by_handler(variant.template_json(variant.stacks.emu), topology.EMU_HANDLER, lane="live")
    )
    web_env = environment(container(variant.template_json(variant.stacks.frontend), "web"))
    # Then no Pinecone stack exists, and every search runtime is told to use pgvector
    assert variant.stacks.pinecone_index is None
    for env in (emu_env, web_env):
        assert env["REFARCH_VECTOR_BACKEND"] == "pgvector"
        assert not {name for name in env if "PINECONE" in name}


def test_monitoring_alarms_notify_the_topic(dev: Synthesized, variant: Synthesized) -> None:
    # Given the monitoring stack
    template = dev.template_json(dev.stacks.monitoring)
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    topic_id = next(iter(resources(template, "AWS::SNS::Topic")))
    metrics = {a["Properties"]["MetricName"] for a in alarms.values() if "MetricName" in a["Properties"]}
    # Then DLQ, queue age, outbox age, Emu errors and the listener are watched, each alarm notifying the topic
    assert metrics == {
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
        "OutboxOldestPendingAge",
        "Errors",
        "CPUUtilization",
    }
    assert all(a["Properties"]["AlarmActions"] == [{"Ref": topic_id}] for a in alarms.values())
    # And each state machine that runs unattended alarms when an execution fails or times out
    watched = {}
    for alarm in alarms.values():
        queries = alarm["Properties"].get("Metrics", [])
        stats = [q["MetricStat"]["Metric"] for q in queries if "MetricStat" in q]
        if stats:
            assert {s["MetricName"] for s in stats} == {"ExecutionsFailed", "ExecutionsTimedOut"}
            [arn] = {json.dumps(s["Dimensions"][0]["Value"]) for s in stats}
            watched[arn] = next(q["Expression"] for q in queries if "Expression" in q)
    assert len(watched) == 3 and set(watched.values()) == {"failed + timed_out"}
    for machine in ("BootstrapStateMachine", "ReconcileStateMachine", "ReindexStateMachine"):
        assert sum(machine in arn for arn in watched) == 1, (machine, list(watched))
    dashboard = json.dumps(only(template, "AWS::CloudWatch::Dashboard")["DashboardBody"])
    for metric in (
        "SyncLag",
        "OutboxBacklog",
        "ConcurrentExecutions",
        "Throttles",
        "HTTPCode_ELB_5XX_Count",
        "TargetResponseTime",
        "DatabaseConnections",
    ):
        assert metric in dashboard
    # And an email subscription exists only where an address is configured
    assert resources(template, "AWS::SNS::Subscription") == {}
    variant_monitoring = variant.template_json(variant.stacks.monitoring)
    (variant_topic_id,) = resources(variant_monitoring, "AWS::SNS::Topic")
    subscription = only(variant_monitoring, "AWS::SNS::Subscription")
    assert subscription == {"Protocol": "email", "TopicArn": {"Ref": variant_topic_id}, "Endpoint": "ops@example.com"}


def test_outputs_name_what_an_operator_needs(dev: Synthesized) -> None:
    # Given every stack's outputs
    outputs = {name for stack in dev.stacks.all() for name in dev.template_json(stack).get("Outputs", {})}
    # Then the site URL, queue URLs, state machine, dashboard and database secret are listed
    assert {
        "SiteUrl",
        "QueueUrl",
        "DeadLetterQueueUrl",
        "BootstrapStateMachineArn",
        "DashboardUrl",
        "DatabaseSecretArn",
    } <= outputs
