"""Monitoring: one dashboard for the whole sync path, and alarms that notify an SNS topic."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_rds as rds
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from cdk_app.config import StageConfig
from cdk_app.constructs.lane_queues import lane_id_prefix
from cdk_app.emu_stack import EmuLane
from cdk_app.nag import acknowledge
from refarch.lanes.topology import LaneName
from refarch.observability import SERVICE, stage_namespace

PERIOD = Duration.minutes(5)


# What each lane's alarms tell whoever they wake: the same checks, different causes and remedies.
# What to do about dead letters (docs/operations.md), the same for both lanes.
_ACT_ON_DEAD_LETTERS = (
    "`refarch dlq list --lane {lane}` (a one-off task of the web task definition; or signed in on the page: "
    "Dead letters) shows each "
    "message's products and reason; fix the cause, then `refarch dlq redrive --lane {lane}`, or "
    "`refarch dlq discard ID...` to drop one (its products stay failed with the reason)."
)
DEAD_LETTER_ALARM_TEXT: dict[LaneName, str] = {
    "live": "Live messages failed maxReceiveCount times (Emu recorded why in sync_state.last_error). "
    + _ACT_ON_DEAD_LETTERS.format(lane="live"),
    "bulk": "Bulk messages failed maxReceiveCount times: a product in each failed every time; its neighbours "
    "were indexed. " + _ACT_ON_DEAD_LETTERS.format(lane="bulk"),
}
QUEUE_AGE_ALARM_TEXT: dict[LaneName, str] = {
    "live": "The oldest sync message is waiting too long: Emu is failing, throttled or under-scaled.",
    "bulk": "Bulk work (bootstrap, repairs, backlogs) waits longer than a large bootstrap should: "
    "the bulk Emu is failing, throttled or under-scaled.",
}
EMU_ERRORS_ALARM_TEXT: dict[LaneName, str] = {
    "live": "Emu invocations are failing as a whole (not single records).",
    "bulk": "Bulk-lane Emu invocations are failing as a whole (not single products).",
}


class MonitoringStack(Stack):
    """Per lane: queue depth and age, DLQ, Emu health; sync lag, web errors and latency, database load."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: StageConfig,
        lanes: Mapping[LaneName, EmuLane],
        listener: ecs.BaseService,
        load_balancer: elbv2.IApplicationLoadBalancer,
        database: rds.IDatabaseInstance,
        state_machines: dict[str, sfn.IStateMachine],
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, id_, **kwargs)
        self.alarms: list[cloudwatch.Alarm] = []
        self.alarm_topic = sns.Topic(self, "Alarms", display_name=f"refarch {config.name} alarms", enforce_ssl=True)
        if config.alarm_email:
            self.alarm_topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        acknowledge(
            self.alarm_topic,
            "AwsSolutions-SNS2",
            "Alarm notifications carry no data beyond alarm names; CloudWatch cannot publish to a topic "
            "encrypted with the AWS-managed SNS key, and a customer key would add idle cost.",
        )

        # The runtimes' own EMF metrics are in the stage's namespace (another stage's never trip these alarms).
        namespace = stage_namespace(config.name)
        # The listener's own EMF metrics (every minute): changes captured but not yet on the queue.
        outbox_age = _emf_metric(namespace, "OutboxOldestPendingAge", "Maximum", cloudwatch.Unit.SECONDS)
        outbox_backlog = _emf_metric(namespace, "OutboxBacklog", "Maximum", cloudwatch.Unit.COUNT)
        # ECS reports a CPU datapoint per minute while a listener task runs: none means none is running.
        listener_samples = cloudwatch.Metric(
            namespace="AWS/ECS",
            metric_name="CPUUtilization",
            period=PERIOD,
            statistic="SampleCount",
            dimensions_map={"ClusterName": listener.cluster.cluster_name, "ServiceName": listener.service_name},
        )

        for lane in lanes.values():
            self._alarm_on_lane(lane, config)
        self._alarm(
            "OutboxAgeHigh",
            outbox_age,
            threshold=config.queue_age_alarm_seconds,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            description="Changes wait in the outbox: the listener runs but cannot send (SQS refusing, "
            "permissions) or cannot keep up. Its log says why.",
        )
        self._alarm(
            "ListenerNotRunning",
            listener_samples,
            threshold=1,
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=3,
            missing=cloudwatch.TreatMissingData.BREACHING,
            description="No Pelican listener task has run for 15 minutes: changes stay in the outbox.",
        )

        # Bootstrap, reconcile and re-index run unattended (a deploy, a schedule): say when one fails.
        for name, state_machine in state_machines.items():
            self._alarm(
                f"{name}ExecutionFailed",
                cloudwatch.MathExpression(
                    expression="failed + timed_out",
                    using_metrics={
                        "failed": state_machine.metric_failed(period=PERIOD, statistic="Sum"),
                        "timed_out": state_machine.metric_timed_out(period=PERIOD, statistic="Sum"),
                    },
                    label=f"{name} executions failed or timed out",
                    period=PERIOD,
                ),
                threshold=0,
                description=f"A {name.lower()} state machine execution failed or timed out: its execution "
                "history in the Step Functions console names the step and the error.",
            )

        self.dashboard = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=f"refarch-{config.name}", default_interval=Duration.hours(3)
        )
        for lane in lanes.values():
            for row in _lane_rows(lane, namespace):
                self.dashboard.add_widgets(*row)
        self.dashboard.add_widgets(
            _graph(
                "Web 5xx",
                load_balancer.metrics.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, period=PERIOD),
                load_balancer.metrics.http_code_target(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=PERIOD),
            ),
            _graph("Web latency (s)", load_balancer.metrics.target_response_time(period=PERIOD, statistic="p95")),
            _graph(
                "Database CPU (%) and connections",
                database.metric_cpu_utilization(period=PERIOD),
                right=[database.metric_database_connections(period=PERIOD)],
            ),
        )
        self.dashboard.add_widgets(
            _graph("Listener tasks reporting (samples)", listener_samples),
            _graph("Outbox backlog (rows) and oldest age (s)", outbox_backlog, right=[outbox_age]),
        )
        self.dashboard.add_widgets(cloudwatch.AlarmStatusWidget(alarms=self.alarms, title="Alarms", width=24))
        CfnOutput(
            self,
            "DashboardUrl",
            description="CloudWatch dashboard for the sync path",
            value=f"https://{self.region}.console.aws.amazon.com/cloudwatch/home?region={self.region}"
            f"#dashboards:name={self.dashboard.dashboard_name}",
        )
        CfnOutput(
            self, "AlarmTopicArn", value=self.alarm_topic.topic_arn, description="Subscribe here to receive the alarms"
        )

    def _alarm_on_lane(self, lane: EmuLane, config: StageConfig) -> None:
        """A lane's three alarms: its DLQ is not empty, its queue's oldest message is too old, its Emu fails."""
        name = lane.queues.name
        prefix = lane_id_prefix(name)
        self._alarm(
            f"{prefix}DeadLetterQueueNotEmpty",
            _visible(lane.queues.dead_letter_queue),
            threshold=0,
            description=DEAD_LETTER_ALARM_TEXT[name],
        )
        self._alarm(
            f"{prefix}QueueAgeHigh",
            _oldest_age(lane.queues.queue),
            threshold=config.queue_age_alarm_threshold(name),
            evaluation_periods=3,
            datapoints_to_alarm=2,
            description=QUEUE_AGE_ALARM_TEXT[name],
        )
        self._alarm(
            f"Emu{prefix}Errors",
            lane.function.metric_errors(period=PERIOD, statistic="Sum"),
            threshold=0,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            description=EMU_ERRORS_ALARM_TEXT[name],
        )

    def _alarm(
        self,
        id_: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        description: str,
        evaluation_periods: int = 1,
        datapoints_to_alarm: int | None = None,
        comparison: cloudwatch.ComparisonOperator = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            id_,
            metric=metric,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            comparison_operator=comparison,
            treat_missing_data=missing,
            alarm_description=description,
        )
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.alarm_topic))
        alarm.add_ok_action(cloudwatch_actions.SnsAction(self.alarm_topic))
        self.alarms.append(alarm)


def _lane_rows(lane: EmuLane, namespace: str) -> list[list[cloudwatch.IWidget]]:
    """A lane's two dashboard rows: its queues and what Emu got done, then its Emu function's health."""
    name = lane.queues.name
    title = name.capitalize()
    function = lane.function
    # Emu's Powertools metrics (EMF) carry the lane as a dimension.
    sync_lag = _emf_metric(namespace, "SyncLag", "p95", cloudwatch.Unit.MILLISECONDS, lane=name)
    embedded = _emf_metric(namespace, "Embedded", "Sum", cloudwatch.Unit.COUNT, lane=name)
    embed_calls = _emf_metric(namespace, "EmbedCalls", "Sum", cloudwatch.Unit.COUNT, lane=name)
    # Throttled answers from the embedding provider (Bedrock's; retried, so a cost in time, not rows).
    embed_throttles = _emf_metric(namespace, "EmbedThrottles", "Sum", cloudwatch.Unit.COUNT, lane=name)
    return [
        [
            _graph(
                f"{title} queue depth",
                _visible(lane.queues.queue),
                _visible(lane.queues.dead_letter_queue).with_(label="DLQ depth"),
            ),
            _graph(
                f"{title} queue oldest message age (s), sync lag p95 (ms)",
                _oldest_age(lane.queues.queue),
                right=[sync_lag],
            ),
            _graph(
                f"{title} products embedded, embedding requests and throttles",
                embedded,
                right=[embed_calls, embed_throttles],
            ),
        ],
        [
            _graph(
                f"{title} Emu errors and throttles",
                function.metric_errors(period=PERIOD, statistic="Sum"),
                function.metric_throttles(period=PERIOD, statistic="Sum"),
            ),
            _graph(
                f"{title} Emu concurrency", function.metric("ConcurrentExecutions", period=PERIOD, statistic="Maximum")
            ),
            _graph(
                f"{title} Emu duration (ms)",
                function.metric_duration(period=PERIOD, statistic="p95"),
                function.metric_duration(period=PERIOD, statistic="Maximum"),
            ),
        ],
    ]


def _visible(queue: sqs.IQueue) -> cloudwatch.Metric:
    """The messages waiting in a queue (the most in each period)."""
    return queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum")


def _oldest_age(queue: sqs.IQueue) -> cloudwatch.Metric:
    """The age (seconds) of a queue's oldest message (the most in each period)."""
    return queue.metric_approximate_age_of_oldest_message(period=PERIOD, statistic="Maximum")


def _emf_metric(
    namespace: str, name: str, statistic: str, unit: cloudwatch.Unit, *, lane: LaneName | None = None
) -> cloudwatch.Metric:
    """One of the runtimes' own Powertools (EMF) metrics: in the stage's namespace (Refarch/<stage>), dimension
    service=refarch (and lane=live|bulk for Emu's)."""
    return cloudwatch.Metric(
        namespace=namespace,
        metric_name=name,
        dimensions_map={"service": SERVICE, **({"lane": lane} if lane else {})},
        period=PERIOD,
        statistic=statistic,
        unit=unit,
    )


def _graph(
    title: str, *left: cloudwatch.IMetric, right: list[cloudwatch.IMetric] | None = None
) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(title=title, left=list(left), right=right or [], width=8)
