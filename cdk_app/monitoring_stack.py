"""Monitoring: one dashboard for the whole sync path, and alarms that notify an SNS topic."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_rds as rds
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from cdk_app.config import StageConfig
from cdk_app.nag import acknowledge
from refarch.observability import NAMESPACE, SERVICE

PERIOD = Duration.minutes(5)


class MonitoringStack(Stack):
    """Per lane: queue depth and age, DLQ, Emu health; sync lag, web errors and latency, database load."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: StageConfig,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        bulk_queue: sqs.IQueue,
        bulk_dead_letter_queue: sqs.IQueue,
        emu: lambda_.IFunction,
        emu_bulk: lambda_.IFunction,
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

        queue_depth = queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum")
        queue_age = queue.metric_approximate_age_of_oldest_message(period=PERIOD, statistic="Maximum")
        dlq_depth = dead_letter_queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum")
        emu_errors = emu.metric_errors(period=PERIOD, statistic="Sum")
        bulk_depth = bulk_queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum")
        bulk_age = bulk_queue.metric_approximate_age_of_oldest_message(period=PERIOD, statistic="Maximum")
        bulk_dlq_depth = bulk_dead_letter_queue.metric_approximate_number_of_messages_visible(
            period=PERIOD, statistic="Maximum"
        )
        emu_bulk_errors = emu_bulk.metric_errors(period=PERIOD, statistic="Sum")
        # Emu's Powertools metrics (EMF), per lane: the age of the oldest change it indexed, per batch.
        sync_lag = _emf_metric("SyncLag", "p95", cloudwatch.Unit.MILLISECONDS, lane="live")
        bulk_sync_lag = _emf_metric("SyncLag", "p95", cloudwatch.Unit.MILLISECONDS, lane="bulk")
        bulk_embed_calls = _emf_metric("EmbedCalls", "Sum", cloudwatch.Unit.COUNT, lane="bulk")
        bulk_embedded = _emf_metric("Embedded", "Sum", cloudwatch.Unit.COUNT, lane="bulk")
        # The listener's own EMF metrics (every minute): changes captured but not yet on the queue.
        outbox_age = _emf_metric("OutboxOldestPendingAge", "Maximum", cloudwatch.Unit.SECONDS)
        outbox_backlog = _emf_metric("OutboxBacklog", "Maximum", cloudwatch.Unit.COUNT)
        # ECS reports a CPU datapoint per minute while a listener task runs: none means none is running.
        listener_samples = cloudwatch.Metric(
            namespace="AWS/ECS",
            metric_name="CPUUtilization",
            period=PERIOD,
            statistic="SampleCount",
            dimensions_map={"ClusterName": listener.cluster.cluster_name, "ServiceName": listener.service_name},
        )

        self._alarm(
            "DeadLetterQueueNotEmpty",
            dlq_depth,
            threshold=0,
            description="Messages failed maxReceiveCount times; Emu logged each reason. Inspect and redrive them.",
        )
        self._alarm(
            "QueueAgeHigh",
            queue_age,
            threshold=config.queue_age_alarm_seconds,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            description="The oldest sync message is waiting too long: Emu is failing, throttled or under-scaled.",
        )
        self._alarm(
            "BulkDeadLetterQueueNotEmpty",
            bulk_dlq_depth,
            threshold=0,
            description="Bulk messages failed maxReceiveCount times: a product in each failed every time "
            "(sync_state.last_error says why); its neighbours were indexed. Fix the cause and redrive.",
        )
        self._alarm(
            "BulkQueueAgeHigh",
            bulk_age,
            threshold=config.bulk_queue_age_alarm_seconds,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            description="Bulk work (bootstrap, repairs, backlogs) waits longer than a large bootstrap should: "
            "the bulk Emu is failing, throttled or under-scaled.",
        )
        self._alarm(
            "EmuBulkErrors",
            emu_bulk_errors,
            threshold=0,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            description="Bulk-lane Emu invocations are failing as a whole (not single products).",
        )
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
            "EmuErrors",
            emu_errors,
            threshold=0,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            description="Emu invocations are failing as a whole (not single records).",
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
        self.dashboard.add_widgets(
            _graph("Live queue depth", queue_depth, dlq_depth.with_(label="DLQ depth")),
            _graph("Live queue oldest message age (s)", queue_age),
            _graph("Live sync lag p95 (ms)", sync_lag),
        )
        self.dashboard.add_widgets(
            _graph("Live Emu errors and throttles", emu_errors, emu.metric_throttles(period=PERIOD, statistic="Sum")),
            _graph("Live Emu concurrency", emu.metric("ConcurrentExecutions", period=PERIOD, statistic="Maximum")),
            _graph(
                "Live Emu duration (ms)",
                emu.metric_duration(period=PERIOD, statistic="p95"),
                emu.metric_duration(period=PERIOD, statistic="Maximum"),
            ),
        )
        self.dashboard.add_widgets(
            _graph("Bulk queue depth (messages of up to 100 products)", bulk_depth, bulk_dlq_depth.with_(label="DLQ")),
            _graph("Bulk queue oldest message age (s)", bulk_age, right=[bulk_sync_lag]),
            _graph("Bulk products embedded and embedding requests", bulk_embedded, right=[bulk_embed_calls]),
        )
        self.dashboard.add_widgets(
            _graph(
                "Bulk Emu errors and throttles",
                emu_bulk_errors,
                emu_bulk.metric_throttles(period=PERIOD, statistic="Sum"),
            ),
            _graph("Bulk Emu concurrency", emu_bulk.metric("ConcurrentExecutions", period=PERIOD, statistic="Maximum")),
            _graph(
                "Bulk Emu duration (ms)",
                emu_bulk.metric_duration(period=PERIOD, statistic="p95"),
                emu_bulk.metric_duration(period=PERIOD, statistic="Maximum"),
            ),
        )
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


def _emf_metric(name: str, statistic: str, unit: cloudwatch.Unit, *, lane: str | None = None) -> cloudwatch.Metric:
    """One of the runtimes' own Powertools (EMF) metrics: namespace Refarch, dimension service=refarch
    (and lane=live|bulk for Emu's)."""
    return cloudwatch.Metric(
        namespace=NAMESPACE,
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
