"""The Pelican state machines: bootstrap (Plan -> Map(Batch) -> Finalize) and reconcile
(Plan -> Map(Shard) -> Finalize). Every step is idempotent, so every step is retried."""

from __future__ import annotations

import math

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from refarch.pelican.bootstrap import RangeBusyError

# The error type the Batch Lambda reports for a range another worker holds (the exception's name).
RANGE_BUSY_ERROR = RangeBusyError.__name__


class BootstrapStateMachine(Construct):
    """Plan λ -> Map (bounded concurrency) of Batch λ -> Finalize λ; any failure is recorded on the run."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        plan: lambda_.IFunction,
        batch: lambda_.IFunction,
        finalize: lambda_.IFunction,
        max_concurrency: int,
        busy_retry_seconds: float,
        busy_retry_attempts: int,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, id_)
        plan_step = _retried(
            tasks.LambdaInvoke(
                self,
                "Plan",
                lambda_function=plan,
                payload_response_only=True,
                comment="Create or resume a run; output {run_id, ranges}",
            )
        )
        batch_step = tasks.LambdaInvoke(
            self,
            "Batch",
            lambda_function=batch,
            payload_response_only=True,
            comment="Enqueue one id range (rows claimed FOR UPDATE SKIP LOCKED)",
        )
        # Another worker holds the range (or a dead one, until Postgres drops its connection): wait
        # and retry, so the Map never ends with a range unsent. Retriers match in order: this one first.
        batch_step.add_retry(
            errors=[RANGE_BUSY_ERROR],
            interval=Duration.seconds(max(1, math.ceil(busy_retry_seconds))),  # ASL takes whole seconds
            max_attempts=busy_retry_attempts,
            backoff_rate=2.0,
        )
        _retried(batch_step)
        enqueue_ranges = sfn.Map(
            self,
            "Enqueue ranges",
            items_path="$.ranges",
            max_concurrency=max_concurrency,
            # Keep the Plan output ({run_id, ranges}) as the state; the per-range results are not needed.
            result_path=sfn.JsonPath.DISCARD,
        ).item_processor(batch_step)
        finalize_step = _retried(
            tasks.LambdaInvoke(
                self,
                "Finalize",
                lambda_function=finalize,
                payload_response_only=True,
                payload=sfn.TaskInput.from_object({"run_id": sfn.JsonPath.number_at("$.run_id")}),
                comment="Mark the run complete",
            )
        )
        record_failure = _retried(
            tasks.LambdaInvoke(
                self,
                "Record failure",
                lambda_function=finalize,
                payload_response_only=True,
                payload=sfn.TaskInput.from_object(
                    {
                        "run_id": sfn.JsonPath.number_at("$.run_id"),
                        "error": sfn.JsonPath.format(
                            "{}: {}", sfn.JsonPath.string_at("$.error.Error"), sfn.JsonPath.string_at("$.error.Cause")
                        ),
                    }
                ),
                result_path=sfn.JsonPath.DISCARD,
                comment="Finalize with {run_id, error}: the run is marked failed with the reason",
            )
        )
        failed = sfn.Fail(
            self,
            "Bootstrap failed",
            error="BootstrapFailed",
            cause="A step failed after its retries; see the run's error in bootstrap_runs",
        )
        record_failure.next(failed)
        # Without a run id (Plan failed) there is nothing to record: fail the execution directly.
        plan_step.add_catch(failed, result_path="$.error")
        enqueue_ranges.add_catch(record_failure, result_path="$.error")
        finalize_step.add_catch(record_failure, result_path="$.error")

        self.log_group, self.state_machine = _logged_state_machine(
            self,
            comment="refarch bootstrap: enqueue every product for indexing (re-runnable, resumable)",
            definition=plan_step.next(enqueue_ranges).next(finalize_step),
            log_retention=log_retention,
        )


def _logged_state_machine(
    scope: Construct, *, comment: str, definition: sfn.IChainable, log_retention: logs.RetentionDays
) -> tuple[logs.LogGroup, sfn.StateMachine]:
    """A state machine with every event logged (execution data included), X-Ray tracing and a 6-hour timeout."""
    log_group = logs.LogGroup(scope, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
    state_machine = sfn.StateMachine(
        scope,
        "StateMachine",
        comment=comment,
        definition_body=sfn.DefinitionBody.from_chainable(definition),
        timeout=Duration.hours(6),
        tracing_enabled=True,
        logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
    )
    return log_group, state_machine


def _retried(task: tasks.LambdaInvoke) -> tasks.LambdaInvoke:
    """Retry a step on Lambda errors with backoff: every bootstrap step is idempotent."""
    task.add_retry(
        errors=[sfn.Errors.TASKS_FAILED, sfn.Errors.TIMEOUT],
        interval=Duration.seconds(5),
        max_attempts=3,
        backoff_rate=2.0,
        jitter_strategy=sfn.JitterType.FULL,
    )
    return task


class ReconcileStateMachine(Construct):
    """Plan λ -> Map (bounded concurrency) of Shard λ -> Finalize λ (sums the shards, publishes metrics)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        plan: lambda_.IFunction,
        shard: lambda_.IFunction,
        finalize: lambda_.IFunction,
        max_concurrency: int,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, id_)
        plan_step = _retried(
            tasks.LambdaInvoke(
                self, "Plan", lambda_function=plan, payload_response_only=True, comment="Output {repair, shards}"
            )
        )
        shard_step = _retried(
            tasks.LambdaInvoke(
                self,
                "Shard",
                lambda_function=shard,
                payload_response_only=True,
                comment="Compare one id shard in Postgres and the index; enqueue forced syncs for its drift",
            )
        )
        compare_shards = sfn.Map(
            self,
            "Compare shards",
            items_path="$.shards",
            max_concurrency=max_concurrency,
            result_path="$.results",  # counts and a few sample ids per shard: small, even for 900 shards
        ).item_processor(shard_step)
        finalize_step = _retried(
            tasks.LambdaInvoke(
                self,
                "Finalize",
                lambda_function=finalize,
                payload_response_only=True,
                payload=sfn.TaskInput.from_object({"results": sfn.JsonPath.list_at("$.results")}),
                comment="Sum the shards' reports; publish DriftMissing/DriftExtra/DriftStale",
            )
        )
        self.log_group, self.state_machine = _logged_state_machine(
            self,
            comment="refarch reconcile: compare database and vector index shard by shard, repair the drift",
            definition=plan_step.next(compare_shards).next(finalize_step),
            log_retention=log_retention,
        )
