"""The synthesized state machines, executed by moto's Amazon States Language interpreter.

moto 5.2 ships the interpreter LocalStack wrote (`moto.stepfunctions.parser`); it runs a
definition state by state, Map, Retry, Catch, JSONPath and ResultSelector included, exactly
as written. This module registers each state machine of an assembly, with its DefinitionString
resolved to local names, in moto's Step Functions backend (the parser backend, which is what
`mock_aws(config={"stepfunctions": {"execute_state_machine": True}})` selects) and routes the
two kinds of task our definitions hold:

- a Lambda task calls a `FunctionRouter` (the function's real handler, in this process or in a
  worker process started with the function's template environment). A handler's exception is
  reported as Lambda reports it, `{"errorType": <exception class name>, ...}` with
  FunctionError "Unhandled", so Retry and Catch match error names as on AWS;
- a StepFunctions StartExecution task (the re-index's Fill, `.sync:2`) starts the other
  state machine in the same backend and waits for it, as on AWS.

Waits and retry intervals can be scaled (`time_scale`, 1.0 = as written): the definitions'
Wait and Retry fields are left as synthesized; only the interpreter's clock for sleeping
between attempts and in Wait states is shortened, for tests and the rehearsal.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from moto.stepfunctions.parser.api import ExecutionStatus
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_sfn
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.parser.models import StepFunctionsParserBackend

from refarch_local.rehearsal.template import Assembly, LocalResource, Resolver, ResourceKey

# The interpreter logs every failed state at ERROR with its whole parse tree; a failed execution
# is reported once, by ExecutionFailed.
logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)

# Calls the function with this local name with an event; reports what the handler returned or raised.
FunctionRouter = Callable[[str, Any], "Invocation"]
# Checks a call a task makes as the machine's role (role ARN, IAM action, resource ARN); raises
# PermissionError when the role may not (refarch_local.rehearsal.iam.IamEnforcedAws.authorize).
Authorizer = Callable[[str, str, str], None]


@dataclass(frozen=True)
class Invocation:
    """One Lambda invocation's outcome: the handler's result, or the name and message of what it raised."""

    result: Any = None
    error_type: str | None = None
    error_message: str = ""
    stack_trace: tuple[str, ...] = ()

    @classmethod
    def of(cls, call: Callable[[], Any]) -> Invocation:
        """Run `call` as the Lambda runtime runs a handler: its exception becomes the reported error."""
        try:
            return cls(result=call())
        except Exception as err:  # reported to the state machine like Lambda does, never swallowed
            return cls.failed(err)

    @classmethod
    def failed(cls, err: BaseException) -> Invocation:
        """The invocation of a handler that raised `err` (its class name is the Lambda error type)."""
        return cls(
            error_type=type(err).__name__,
            error_message=str(err),
            stack_trace=tuple(traceback.format_exception(err)),
        )

    def lambda_response(self) -> dict[str, Any]:
        """The Lambda Invoke API's response, as the interpreter reads it."""
        if self.error_type is None:
            return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(self.result).encode())}
        error = {"errorType": self.error_type, "errorMessage": self.error_message, "stackTrace": list(self.stack_trace)}
        return {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": io.BytesIO(json.dumps(error).encode())}


class ExecutionFailed(RuntimeError):
    """An execution ended other than SUCCEEDED; the message names the error, its cause, the state it failed
    in and the first failure (with its state) that led there (a Fail state after a Catch hides it otherwise)."""

    def __init__(
        self,
        state_machine: str,
        status: str,
        error: str | None,
        cause: str | None,
        *,
        state: str | None = None,
        first_failure: str | None = None,
    ) -> None:
        self.status, self.error, self.cause, self.state, self.first_failure = status, error, cause, state, first_failure
        where = f" in state {state!r}" if state else ""
        after = f" (first failure {first_failure})" if first_failure and first_failure not in (cause or "") else ""
        super().__init__(f"{state_machine} execution {status}{where}: {error}: {cause}{after}")


def function_name(key: ResourceKey) -> str:
    """A function's local name (CloudFormation names functions <stack>-<logical id>, at most 64 characters)."""
    return f"{key.stack}-{key.logical_id}"[:64]


def state_machine_name(key: ResourceKey) -> str:
    """A state machine's local name (<stack>-<logical id>, as CloudFormation generates it)."""
    return f"{key.stack}-{key.logical_id}"[:80]


def local_functions_and_state_machines(
    assembly: Assembly, region: str, account: str
) -> dict[ResourceKey, LocalResource]:
    """The local name and ARN of every Lambda function and state machine of the assembly (for a Resolver)."""
    found: dict[ResourceKey, LocalResource] = {}
    for key, _ in assembly.resources("AWS::Lambda::Function"):
        name = function_name(key)
        found[key] = LocalResource(ref=name, attributes={"Arn": f"arn:aws:lambda:{region}:{account}:function:{name}"})
    for key, _ in assembly.resources("AWS::StepFunctions::StateMachine"):
        name = state_machine_name(key)
        arn = f"arn:aws:states:{region}:{account}:stateMachine:{name}"
        found[key] = LocalResource(ref=arn, attributes={"Arn": arn, "Name": name})
    return found


@dataclass
class ExecutionCounts:
    """Executions started by a `StateMachines` (nested ones included), and how many did not succeed."""

    started: int = 0
    failed: int = 0


class StateMachines:
    """The state machines of one assembly in moto's interpreter, their Lambda tasks routed to `functions`."""

    POLL_SECONDS = 0.05

    def __init__(
        self,
        assembly: Assembly,
        resolver: Resolver,
        functions: FunctionRouter,
        *,
        time_scale: float = 1.0,
        authorize: Authorizer | None = None,
    ) -> None:
        self.assembly = assembly
        self.functions = functions
        self.time_scale = time_scale
        self.authorize = authorize
        self.counts = ExecutionCounts()
        region, account = resolver.pseudo["AWS::Region"], resolver.pseudo["AWS::AccountId"]
        self.backend = StepFunctionsParserBackend(region_name=str(region), account_id=str(account))
        self._arns: dict[str, str] = {}
        for spec in assembly.state_machines():
            definition = resolver.resolve_text(spec.key.stack, spec.definition)
            machine = self.backend.create_state_machine(
                name=state_machine_name(spec.key),
                definition=definition,
                roleArn=f"arn:aws:iam::{account}:role/{spec.role.logical_id if spec.role else 'StateMachineRole'}",
            )
            self._arns[spec.key.logical_id] = machine.arn

    def arn(self, construct: str) -> str:
        """The ARN of the construct's state machine ("Bootstrap", "Reconcile", "Reindex")."""
        return self._arns[self.assembly.state_machine(construct).key.logical_id]

    def run(self, construct: str, execution_input: dict[str, Any], *, timeout_seconds: float | None = None) -> Any:
        """Start an execution, wait for its end and return its output; ExecutionFailed if it did not succeed."""
        return self.run_together(construct, [execution_input], timeout_seconds=timeout_seconds)[0]

    def run_together(
        self, construct: str, inputs: list[dict[str, Any]], *, timeout_seconds: float | None = None
    ) -> list[Any]:
        """Start one execution per input at once, wait for all; their outputs (ExecutionFailed for the first failed)."""
        with routed(self):
            arns = [self.start(self.arn(construct), execution_input) for execution_input in inputs]
            return [self.wait(arn, timeout_seconds=timeout_seconds) for arn in arns]

    def run_until(
        self, construct: str, execution_input: dict[str, Any], state: str, *, timeout_seconds: float | None = None
    ) -> tuple[Any, bool]:
        """Start an execution and wait until it ends or enters `state` (a Wait state), whichever comes first.

        Entered: the execution is stopped there, while it waits, so no state after it runs; returns
        (the input it entered `state` with, True). Ended first: (its output, False), or ExecutionFailed.
        """
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        with routed(self):
            arn = self.start(self.arn(construct), execution_input)
            while True:
                execution: Any = self.backend.describe_execution(arn)
                if execution.status != ExecutionStatus.RUNNING:
                    return self.wait(arn), False
                entered = entered_input(execution.to_history_output()["events"], state)
                if entered is not None:
                    self.backend.stop_execution(arn)
                    return entered, True
                if deadline is not None and time.monotonic() > deadline:
                    self.backend.stop_execution(arn)
                    raise TimeoutError(f"execution {arn} still running after {timeout_seconds} s: stopped")
                time.sleep(self.POLL_SECONDS)

    def start(self, state_machine_arn: str, execution_input: Any, name: str | None = None) -> str:
        """Start an execution (input as JSON text or a value); return its ARN."""
        text = execution_input if isinstance(execution_input, str) else json.dumps(execution_input)
        execution = self.backend.start_execution(
            state_machine_arn, name=name or str(uuid.uuid4()), execution_input=text
        )
        self.counts.started += 1
        return execution.execution_arn

    def wait(self, execution_arn: str, *, timeout_seconds: float | None = None) -> Any:
        """Wait for the execution to end; its output, or ExecutionFailed naming the error, cause and state."""
        deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
        # The parser backend's executions (moto.stepfunctions.parser.backend.execution), typed as the base class's.
        execution: Any = self.backend.describe_execution(execution_arn)
        while execution.status == ExecutionStatus.RUNNING:
            if deadline is not None and time.monotonic() > deadline:
                self.backend.stop_execution(execution_arn)
                raise TimeoutError(f"execution {execution_arn} still running after {timeout_seconds} s: stopped")
            time.sleep(self.POLL_SECONDS)
        if execution.status != ExecutionStatus.SUCCEEDED:
            self.counts.failed += 1
            events = execution.to_history_output()["events"]
            raise ExecutionFailed(
                execution.state_machine.name,
                str(getattr(execution.status, "value", execution.status)),
                execution.error,
                execution.cause,
                state=failed_state(events),
                first_failure=first_failure(events),
            )
        return json.loads(execution.output) if isinstance(execution.output, str) else execution.output

    def describe(self, execution_arn: str) -> dict[str, Any]:
        """DescribeExecution's output (the interpreter's .sync integration polls it)."""
        execution: Any = self.backend.describe_execution(execution_arn)
        return dict(execution.to_describe_output())

    def check(self, role_arn: str, action: str, resource: str, operation: str) -> None:
        """Fail a task's call its role may not make as AWS fails it (AccessDeniedException), when authorizing."""
        if self.authorize is None:
            return
        try:
            self.authorize(role_arn, action, resource)
        except PermissionError as denied:
            refusal: Any = {"Error": {"Code": "AccessDeniedException", "Message": str(denied)}}
            refusal["ResponseMetadata"] = {"HTTPStatusCode": 403}
            raise ClientError(refusal, operation) from None


def failed_state(events: list[dict[str, Any]]) -> str | None:
    """The name of the last state the execution entered (where it failed)."""
    for event in reversed(events):
        details = event.get("stateEnteredEventDetails")
        if details:
            return str(details["name"])
    return None


def entered_input(events: list[dict[str, Any]], state: str) -> Any:
    """The input the execution first entered `state` with (None: it has not entered it)."""
    for event in events:
        details = event.get("stateEnteredEventDetails")
        if details and details["name"] == state:
            text = details.get("input")
            return json.loads(text) if isinstance(text, str) else text
    return None


def first_failure(events: list[dict[str, Any]]) -> str | None:
    """The first failure in the history, with the state it happened in: the cause of what followed
    ("in state 'Batch': ConfigurationError: No bulk queue configured ...")."""
    state = None
    for event in events:
        entered = event.get("stateEnteredEventDetails")
        if entered:
            state = entered["name"]
        details = next(
            (v for k, v in event.items() if k.endswith("FailedEventDetails") and k != "executionFailedEventDetails"),
            None,
        )
        if details:
            cause = details.get("cause", "")
            try:
                message = json.loads(cause).get("errorMessage", cause)
            except (ValueError, AttributeError):
                message = cause
            return f"in state {state!r}: {details.get('error')}: {message}"
    return None


# ---------------------------------------------------------------------------------------------
# Routing the interpreter's AWS clients
# ---------------------------------------------------------------------------------------------


class _LambdaClient:
    """The Lambda API's Invoke, answered by the router (the interpreter calls nothing else)."""

    def __init__(self, machines: StateMachines, role_arn: str) -> None:
        self.machines = machines
        self.role_arn = role_arn

    def invoke(self, FunctionName: str, Payload: bytes | str | None = None, **_: Any) -> dict[str, Any]:  # noqa: N803
        name = FunctionName.rsplit(":", 1)[-1] if FunctionName.startswith("arn:") else FunctionName
        backend = self.machines.backend
        arn = f"arn:aws:lambda:{backend.region_name}:{backend.account_id}:function:{name}"
        self.machines.check(self.role_arn, "lambda:InvokeFunction", arn, "Invoke")
        event = json.loads(Payload) if Payload else {}
        return self.machines.functions(name, event).lambda_response()


class _StatesClient:
    """StartExecution and DescribeExecution of the same backend (the `.sync` integration's calls)."""

    def __init__(self, machines: StateMachines, role_arn: str) -> None:
        self.machines = machines
        self.role_arn = role_arn

    def start_execution(self, **parameters: Any) -> dict[str, Any]:
        """StartExecution, with the parameters as the definition writes them (StateMachineArn, Input)."""
        given = {name.lower(): value for name, value in parameters.items()}
        self.machines.check(self.role_arn, "states:StartExecution", given["statemachinearn"], "StartExecution")
        arn = self.machines.start(given["statemachinearn"], given.get("input") or "{}", given.get("name"))
        # As the service integration answers it (the interpreter reads ExecutionArn).
        return {"ExecutionArn": arn, "StartDate": self.machines.backend.describe_execution(arn).start_date}

    def describe_execution(self, executionArn: str) -> dict[str, Any]:  # noqa: N803
        self.machines.check(self.role_arn, "states:DescribeExecution", executionArn, "DescribeExecution")
        described = self.machines.describe(executionArn)
        if described["status"] in (ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT, ExecutionStatus.ABORTED):
            self.machines.counts.failed += 1
        return described


_routing_lock = threading.Lock()
_active: list[StateMachines] = []
# These modules import boto_client_for and time without re-exporting them; the patches below must replace the
# names those modules look up, so mypy's implicit-reexport check (attr-defined) is silenced on those lines only.
_original_client_for = lambda_eval_utils.boto_client_for  # type: ignore[attr-defined]
_original_retry_time = retrier_decl.time  # type: ignore[attr-defined]
_original_wait = WaitFunction._wait_interval


class _ScaledSleep:
    """`time` for the retrier: its sleeps shortened by the active executor's time scale."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds * _scale())


def _scale() -> float:
    return _active[-1].time_scale if _active else 1.0


def _scaled_wait(self: WaitFunction, env: Any, wait_seconds: int) -> None:
    """A Wait state's wait, scaled, and cut short when the execution stops (as moto's own does)."""
    if _scale() == 1.0:
        _original_wait(self, env, wait_seconds)
        return
    ends = time.monotonic() + wait_seconds * _scale()
    while env.is_running() and (left := ends - time.monotonic()) > 0:
        env.program_state_event.wait(left)  # woken early by other events: wait the rest, as moto's own does


def _client_for(region: str, service: str, state_credentials: Any = None) -> Any:
    machines = _active[-1] if _active else None
    if machines is not None and service == "lambda":
        return _LambdaClient(machines, state_credentials.role_arn)
    if machines is not None and service == "stepfunctions":
        return _StatesClient(machines, state_credentials.role_arn)
    return _original_client_for(region=region, service=service, state_credentials=state_credentials)


@contextmanager
def routed(machines: StateMachines) -> Iterator[None]:
    """While inside, the interpreter's Lambda and Step Functions calls go to `machines` (one executor at a time)."""
    with _routing_lock:
        _active.append(machines)
        lambda_eval_utils.boto_client_for = _client_for  # type: ignore[attr-defined]
        state_task_service_sfn.boto_client_for = _client_for  # type: ignore[attr-defined]
        retrier_decl.time = _ScaledSleep()  # type: ignore[attr-defined, assignment]
        WaitFunction._wait_interval = _scaled_wait  # type: ignore[method-assign]
    try:
        yield
    finally:
        with _routing_lock:
            _active.remove(machines)
            if not _active:
                lambda_eval_utils.boto_client_for = _original_client_for  # type: ignore[attr-defined]
                state_task_service_sfn.boto_client_for = _original_client_for  # type: ignore[attr-defined]
                retrier_decl.time = _original_retry_time  # type: ignore[attr-defined]
                WaitFunction._wait_interval = _original_wait  # type: ignore[method-assign]
