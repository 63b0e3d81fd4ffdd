"""The state machines: bootstrap (Plan -> Map(Batch) -> Finalize), reconcile (Plan -> Map(Shard) -> Finalize)
and re-index (Start -> Fill -> poll -> Switch). Every step is idempotent, so every step is retried."""

from __future__ import annotations

import math

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from refarch.generations import GenerationError, IncompleteGenerationError
from refarch.pelican.bootstrap import RangeBusyError

# The error type the Batch Lambda reports for a range another worker holds (the exception's name).
RANGE_BUSY_ERROR = RangeBusyError.__name__
# The error types the reindex Lambda reports when a generation is not in the state a step needs.
GENERATION_ERROR = GenerationError.__name__
INCOMPLETE_GENERATION_ERROR = IncompleteGenerationError.__name__
# A standard workflow ends at 25,000 history events; one poll (Wait, Progress λ, Choice) writes 9.
HISTORY_EVENTS_PER_POLL = 10
HISTORY_EVENT_BUDGET = 20_000  # the rest is room for retries, bootstrap re-runs and the switch


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
    scope: Construct,
    *,
    comment: str,
    definition: sfn.IChainable,
    log_retention: logs.RetentionDays,
    timeout: Duration = Duration.hours(6),
) -> tuple[logs.LogGroup, sfn.StateMachine]:
    """A state machine with every event logged (execution data included), X-Ray tracing and a timeout (6 hours)."""
    log_group = logs.LogGroup(scope, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
    state_machine = sfn.StateMachine(
        scope,
        "StateMachine",
        comment=comment,
        definition_body=sfn.DefinitionBody.from_chainable(definition),
        timeout=timeout,
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


class ReindexStateMachine(Construct):
    """A re-index to the configured embedder, from start to switch (docs/reindex.md).

    Start λ -> Needed? (no: Succeed) -> Fill (the bootstrap state machine for the building
    generation, run to its end) -> Wait -> Progress λ -> Complete? yes: Switch λ -> Succeed; no,
    and both lanes idle (rows were lost or dead-lettered): Fill again; else Wait. A switch refused
    because a change arrived since the poll (IncompleteGenerationError) goes back to Wait. The
    loop ends at the state machine's timeout at the latest; the build goes on, and a new
    execution resumes it.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        reindex: lambda_.IFunction,
        bootstrap: sfn.IStateMachine,
        poll: Duration,
        timeout: Duration,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, id_)
        polls = timeout.to_seconds() / poll.to_seconds()
        if polls * HISTORY_EVENTS_PER_POLL > HISTORY_EVENT_BUDGET:
            raise ValueError(
                f"polling every {poll.to_seconds():.0f} s for {timeout.to_hours():.0f} h is {polls:.0f} polls, more "
                "than a state machine's execution history holds: poll less often or time out sooner"
            )
        generation = sfn.JsonPath.number_at("$.generation")
        start = self._step(
            reindex,
            "Start",
            {"action": "start"},
            result_path="$",
            comment="Create or find the configured embedder's building generation; output {generation, needed}",
        )
        fill = tasks.StepFunctionsStartExecution(
            self,
            "Fill",
            state_machine=bootstrap,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            input=sfn.TaskInput.from_object({"generation": generation}),
            associate_with_parent=True,
            result_path=sfn.JsonPath.DISCARD,
            comment="A bootstrap run for the building generation: sends what its ledger lacks to the bulk lane",
        )
        fill.add_retry(errors=[sfn.Errors.TASKS_FAILED], interval=Duration.minutes(1), max_attempts=2, backoff_rate=2.0)
        wait = sfn.Wait(self, "Wait", time=sfn.WaitTime.duration(poll), comment="Emu fills the generation")
        progress = self._step(
            reindex,
            "Progress",
            {"action": "progress", "generation": generation},
            result_path="$.progress",
            comment="Rows missing, deletes pending, complete, and whether both lanes are idle",
        )
        switch = self._step(
            reindex,
            "Switch",
            {"action": "switch", "generation": generation},
            result_path="$.switched",
            comment="Make the generation active (checked complete again, in one transaction)",
        )
        switch.add_catch(wait, errors=[INCOMPLETE_GENERATION_ERROR], result_path="$.refused")
        not_needed = sfn.Succeed(self, "Not needed", comment="The active generation uses the configured embedder")
        needed = (
            sfn.Choice(self, "Needed?").when(sfn.Condition.boolean_equals("$.needed", True), fill).otherwise(not_needed)
        )
        complete = (
            sfn.Choice(self, "Complete?")
            .when(sfn.Condition.boolean_equals("$.progress.complete", True), switch)
            .when(sfn.Condition.boolean_equals("$.progress.lanes_idle", True), fill)
            .otherwise(wait)
        )
        fill.next(wait)
        wait.next(progress)
        progress.next(complete)
        switch.next(sfn.Succeed(self, "Switched"))
        self.log_group, self.state_machine = _logged_state_machine(
            self,
            comment="refarch re-index: build a generation for the configured embedder, then switch search to it",
            definition=start.next(needed),
            log_retention=log_retention,
            timeout=timeout,
        )

    def _step(
        self, reindex: lambda_.IFunction, name: str, payload: dict[str, object], *, result_path: str, comment: str
    ) -> tasks.LambdaInvoke:
        """One reindex Lambda step: a refusal (a generation not in the state asked) is not retried; errors are."""
        task = tasks.LambdaInvoke(
            self,
            name,
            lambda_function=reindex,
            payload_response_only=True,
            payload=sfn.TaskInput.from_object(payload),
            result_path=result_path,
            comment=comment,
        )
        # Retriers match in order: this one first, ahead of the TaskFailed wildcard, which would match it.
        task.add_retry(errors=[GENERATION_ERROR, INCOMPLETE_GENERATION_ERROR], max_attempts=0)
        return _retried(task)
