"""Lambda functions run as Lambda runs them: each in processes of its own, started with its template environment.

A `FunctionWorker` is one warm container: a child process (`function_worker`) started with
exactly the function's resolved template environment plus what Lambda itself provides (region,
credentials) and the local endpoints (AWS_ENDPOINT_URL, and OPENAI_BASE_URL for the OpenAI
stand-in), in an empty working directory. A `FunctionPool` keeps warm workers per function and
starts another when an invocation arrives while every one is busy, as Lambda scales out.

Credentials come from `environment_for(function)`, so each function's calls can be signed with
credentials of its own role (the IAM enforcement part provides them).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from refarch_local.rehearsal.states import Invocation
from refarch_local.rehearsal.template import REPO_ROOT, ResourceKey
from refarch_local.rehearsal.wiring import undeclared

# Set by the Lambda service (or this rehearsal) rather than the template: never a wiring gap.
RUNTIME_PROVIDED = frozenset(
    {
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_TIMEOUT",
        "OPENAI_BASE_URL",
        "PATH",
        "PYTHONPATH",
        "HOME",
        "LANG",
        "TZ",
    }
)


@dataclass(frozen=True)
class FunctionRuntime:
    """What one function runs: its local name, handler, resolved template environment, limits and role."""

    name: str
    handler: str
    environment: dict[str, str]
    timeout_seconds: int
    memory_mb: int
    role: ResourceKey | None


class FunctionWorker:
    """One warm container of a function: a child process serving one invocation at a time."""

    START_TIMEOUT_SECONDS = 120.0

    def __init__(
        self,
        function: FunctionRuntime,
        environment: dict[str, str],
        *,
        workdir: Path,
        log: IO[str],
        deployment: int = 0,
    ) -> None:
        self.function = function
        self.deployment = deployment
        workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "refarch_local.rehearsal.function_worker", function.handler],
            env=environment,
            cwd=workdir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        self.env_reads: set[str] = set()
        started = self._read(self.START_TIMEOUT_SECONDS)
        self.cold_start_error = None if started.get("ready") else _invocation(started)

    def invoke(self, event: Any) -> Invocation:
        """One invocation; a worker that runs past the function's timeout is killed (Lambda: Sandbox.Timedout)."""
        if self.cold_start_error is not None:
            return self.cold_start_error
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"event": event, "timeout_seconds": self.function.timeout_seconds}) + "\n")
        self.process.stdin.flush()
        try:
            return _invocation(self._read(self.function.timeout_seconds + 5))
        except TimeoutError as err:
            self.close()
            return Invocation(error_type="Sandbox.Timedout", error_message=str(err))

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError(f"{self.function.name} did not answer within {timeout:.0f} s")
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            return {"error_type": "Runtime.ExitError", "error_message": f"{self.function.name} exited with {code}"}
        message: dict[str, Any] = json.loads(line)
        self.env_reads.update(message.get("env_reads", []))
        return message

    @property
    def alive(self) -> bool:
        """Whether the process still runs (a crashed or timed-out container is replaced)."""
        return self.process.poll() is None

    def close(self) -> None:
        """Stop the container (stdin closed: it exits; killed if it does not)."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _invocation(message: dict[str, Any]) -> Invocation:
    if "error_type" in message:
        return Invocation(
            error_type=message["error_type"],
            error_message=message.get("error_message", ""),
            stack_trace=tuple(message.get("stack_trace", ())),
        )
    return Invocation(result=message.get("result"))


def lambda_environment(function: FunctionRuntime, region: str) -> dict[str, str]:
    """The template environment plus what the Lambda service sets, and a PATH and PYTHONPATH (the code)."""
    return {
        **function.environment,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(function.timeout_seconds),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "PYTHONPATH": str(REPO_ROOT),
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
    }


class FunctionPool:
    """Warm workers per function, invoked by local function name (a `FunctionRouter` for `StateMachines`).

    `endpoints(function)` gives the variables added to each worker's Lambda environment: the
    local endpoints and the credentials its calls are signed with.
    """

    def __init__(
        self,
        functions: list[FunctionRuntime],
        *,
        region: str,
        endpoints: Callable[[FunctionRuntime], dict[str, str]],
        workdir: Path,
    ) -> None:
        self.functions = {f.name: f for f in functions}
        self.region = region
        self.endpoints = endpoints
        self.workdir = workdir
        self.invocations = 0
        self.deployment = 0
        self._idle: dict[str, list[FunctionWorker]] = {name: [] for name in self.functions}
        self._all: list[FunctionWorker] = []
        self._lock = threading.Lock()
        workdir.mkdir(parents=True, exist_ok=True)
        self._log = (workdir / "functions.log").open("a")

    def __call__(self, name: str, event: Any) -> Invocation:
        """Invoke the function with this local name on a warm worker (or a new one)."""
        worker = self._take(name)
        try:
            return worker.invoke(event)
        finally:
            with self._lock:
                self.invocations += 1
                current = worker.deployment == self.deployment
                if current and worker.alive and worker.cold_start_error is None:
                    self._idle[name].append(worker)
            if not current:
                worker.close()  # a container of the previous deployment, done with its last invocation

    def redeploy(self, functions: list[FunctionRuntime]) -> None:
        """A deploy: new function configurations; idle workers stop now, busy ones after their invocation."""
        with self._lock:
            self.functions = {f.name: f for f in functions}
            self.deployment += 1
            idle = [worker for workers in self._idle.values() for worker in workers]
            self._idle = {name: [] for name in self.functions}
        for worker in idle:
            worker.close()

    def by_handler(self, handler: str, **environment: str) -> FunctionRuntime:
        """The one function with this handler (and these environment values)."""
        (found,) = [
            f
            for f in self.functions.values()
            if f.handler == handler and all(f.environment.get(k) == v for k, v in environment.items())
        ]
        return found

    def lambda_handler(self, name: str) -> Callable[[dict[str, Any], Any], Any]:
        """A handler-shaped callable (event, context) that invokes the function; raises what the function raised."""

        def handler(event: dict[str, Any], context: Any) -> Any:
            outcome = self(name, event)
            if outcome.error_type is not None:
                raise FunctionError(f"{name}: {outcome.error_type}: {outcome.error_message}")
            return outcome.result

        return handler

    def undeclared_reads(self) -> dict[str, set[str]]:
        """Function name -> the environment variables its code read (or the Settings fields it read at their
        defaults) that neither its template nor Lambda sets, less what `wiring.undeclared` allows."""
        found: dict[str, set[str]] = {}
        for worker in self._all:
            missing = undeclared(worker.env_reads, set(worker.function.environment) | RUNTIME_PROVIDED)
            if missing:
                found.setdefault(worker.function.name, set()).update(missing)
        return found

    def _take(self, name: str) -> FunctionWorker:
        with self._lock:
            if self._idle[name]:
                return self._idle[name].pop()
        function = self.functions[name]
        environment = {**lambda_environment(function, self.region), **self.endpoints(function)}
        worker = FunctionWorker(
            function, environment, workdir=self.workdir / name, log=self._log, deployment=self.deployment
        )
        with self._lock:
            self._all.append(worker)
        return worker

    def close(self) -> None:
        """Stop every worker."""
        for worker in self._all:
            worker.close()
        self._log.close()


class FunctionError(RuntimeError):
    """A function invoked through `FunctionPool.lambda_handler` failed; the message names the error type."""
