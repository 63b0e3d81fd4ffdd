"""The rehearsal: what `cdk deploy` creates, run locally from the synthesized templates (`make rehearse`).

First every migration is applied to a populated database of the schema before it
(`refarch_local.migration_upgrades`). Then, in order, as a first deploy and its first days would:
the migrate custom resource (the event
CloudFormation sends, the template's properties); the first bootstrap through the bootstrap
state machine (the input its StartFirstBootstrap custom resource gives) while each Emu lane's
event source mapping feeds its function; an edit through the web container's HTTP API, carried
by the listener container into the live lane; a reconcile through its state machine; then a
deploy that changes the embedding model and the re-index it starts, through its state machine
(Fill runs the bootstrap machine). Each function runs in worker processes started with its
template environment only (`functions`), each container with its task definition's
(`containers`), signing its AWS calls with its role's IAM user (`iam`): every call is authorized
against the role's policies from the template, and the state machines' tasks as the machine's
role. Any failure raises RehearsalFailed naming what failed: a step, a variable read that the
template does not set, or a call refused (role, action, resource).

The summary (the last line `make rehearse` prints) counts executions (and failed ones), calls
checked and denied, and migrations upgraded.
"""

from __future__ import annotations

import copy
import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg2

from refarch.db import with_database
from refarch.lanes.topology import MIGRATE_HANDLER, Lane
from refarch.status import sync_counts
from refarch_local.event_source import EventSourcePoller
from refarch_local.migration_upgrades import check_upgrades_on_server
from refarch_local.rehearsal.cloud import REGION, LocalCloud
from refarch_local.rehearsal.containers import Container, container_runtime
from refarch_local.rehearsal.functions import FunctionPool, FunctionRuntime
from refarch_local.rehearsal.iam import CallDenied, PermissionsMissing, starts
from refarch_local.rehearsal.states import StateMachines, function_name
from refarch_local.rehearsal.template import Assembly, Resolver, ResourceKey, synthesized_assembly
from refarch_local.rehearsal.web_client import rename_product

# Edited by the rehearsal's deploy that changes the model (a re-index of the same dimension, same index).
REINDEX_MODEL = "text-embedding-3-large"


class RehearsalFailed(RuntimeError):
    """A step of the rehearsal failed; the message says which and why."""


@dataclass(frozen=True)
class RehearsalOptions:
    """How big and how fast: rows seeded and bootstrapped, and the interpreter's clock (Wait and Retry intervals)."""

    home: Path
    rows: int = 1000
    # 1/60: the re-index's 60 s poll takes 1 s; a busy range's 5 s retry 0.08 s.
    time_scale: float = 1 / 60
    timeout_seconds: float = 600.0
    # The steps to run, in their order (a test may stop after the bootstrap).
    steps: tuple[str, ...] = ("upgrades", "migrate", "bootstrap", "edit", "reconcile", "reindex")


def function_runtimes(assembly: Assembly, resolver: Resolver) -> list[FunctionRuntime]:
    """Every function of the project's handlers (lambdas.*), its template environment resolved."""
    return [
        FunctionRuntime(
            name=function_name(f.key),
            handler=f.handler,
            environment={k: resolver.resolve_text(f.key.stack, v) for k, v in f.environment.items()},
            timeout_seconds=f.timeout_seconds,
            memory_mb=f.memory_mb,
            role=f.role,
        )
        for f in assembly.functions()
        if f.handler.startswith("lambdas.")
    ]


def redeployed(assembly: Assembly, variable: str, value: str) -> Assembly:
    """The assembly a stage config change would synthesize: `variable` set to `value` wherever a runtime has it."""
    templates = copy.deepcopy(assembly.templates)
    for template in templates.values():
        for resource in template["Resources"].values():
            if resource["Type"] == "AWS::Lambda::Function":
                variables = resource["Properties"].get("Environment", {}).get("Variables", {})
                if variable in variables:
                    variables[variable] = value
            elif resource["Type"] == "AWS::ECS::TaskDefinition":
                for container in resource["Properties"]["ContainerDefinitions"]:
                    for item in container.get("Environment", []):
                        if item["Name"] == variable:
                            item["Value"] = value
    return Assembly(outdir=assembly.outdir, templates=templates)


class Rehearsal:
    """One rehearsal run over an assembly; `run()` returns the summary."""

    def __init__(self, assembly: Assembly, options: RehearsalOptions) -> None:
        self.assembly = assembly
        self.options = options
        self.cloud = LocalCloud(assembly, options.home)
        self.deadline = time.monotonic() + options.timeout_seconds
        self.steps: dict[str, Any] = {}
        self.calls = (0, 0)  # (checked, denied), read from the AWS API when the run ends

    def run(self) -> dict[str, Any]:
        """Every step in order; the summary (RehearsalFailed when a step fails)."""
        with ExitStack() as stack:
            self.cloud.start()
            stack.callback(self.cloud.stop)
            # Read once every runtime has stopped and before the AWS API does (callbacks run last in,
            # first out), whether the run passed or failed.
            stack.callback(self._count_calls)
            self.resolver = self.cloud.provision()
            # Every runtime role gets an IAM user with exactly its policies: each call is authorized as on AWS.
            self.cloud.aws.grant_runtime_roles(self.assembly, self.resolver)
            self.pool = self._pool(self.assembly)
            stack.callback(self.pool.close)
            self.machines = StateMachines(
                self.assembly,
                self.resolver,
                self.pool,
                time_scale=self.options.time_scale,
                authorize=self.cloud.aws.authorize,
            )
            steps: dict[str, Callable[[], Any]] = {
                "upgrades": self.upgrades,
                "migrate": self.migrate,
                "bootstrap": self.bootstrap,
                "edit": lambda: self.edit(stack),
                "reconcile": self.reconcile,
                "reindex": self.reindex,
            }
            stack.enter_context(self.event_sources())
            for name in self.options.steps:
                self._step(name, steps[name])
            undeclared = self.pool.undeclared_reads()
            if undeclared:
                raise RehearsalFailed(f"environment variables read but not set by the template: {undeclared}")
            try:
                self.cloud.aws.assert_no_denials()
            except PermissionsMissing as missing:
                raise RehearsalFailed(str(missing)) from None
        return self.partial_summary()

    def partial_summary(self) -> dict[str, Any]:
        """The summary of the steps done so far."""
        machines = getattr(self, "machines", None)
        checked, denied = self.calls
        return {
            "executions": machines.counts.started if machines else 0,
            "executions_failed": machines.counts.failed if machines else 0,
            "calls_checked": checked,
            "calls_denied": denied,
            "migrations_upgraded": self.steps.get("upgrades", {}).get("migrations", 0),
            "rows": self.options.rows,
            "steps": self.steps,
        }

    def _step(self, name: str, action: Callable[[], Any]) -> None:
        if time.monotonic() > self.deadline:
            raise RehearsalFailed(f"{name}: not started, the rehearsal ran out of time")
        started = time.perf_counter()
        try:
            result = action()
        except RehearsalFailed:
            raise
        except Exception as err:  # every failure names its step
            raise RehearsalFailed(f"{name}: {type(err).__name__}: {err}") from err
        self.steps[name] = {"seconds": round(time.perf_counter() - started, 1), **(result or {})}

    def _pool(self, assembly: Assembly) -> FunctionPool:
        """Workers for the assembly's functions, calling AWS at the local endpoint with their role's credentials."""

        def endpoints(function: FunctionRuntime) -> dict[str, str]:
            return {
                "AWS_ENDPOINT_URL": self.cloud.endpoint,
                "OPENAI_BASE_URL": self.cloud.openai.base_url,
                **self._credentials(function.role),
            }

        return FunctionPool(
            function_runtimes(assembly, self.resolver),
            region=REGION,
            endpoints=endpoints,
            workdir=self.options.home / "functions",
        )

    def _count_calls(self) -> None:
        self.calls = self.cloud.aws.counts()

    def _credentials(self, role: ResourceKey | None) -> dict[str, str]:
        """The environment a runtime signs its AWS calls with: its role's IAM user's keys."""
        if role is None:
            raise RehearsalFailed("a runtime without a role in the template cannot call AWS")
        return self.cloud.aws.credentials_for(role)

    # -- steps -------------------------------------------------------------------------------

    def upgrades(self) -> dict[str, Any]:
        """Every migration applied to a populated database of the schema before it (migration_upgrades)."""
        return {"migrations": check_upgrades_on_server(self.cloud.database.dsn)}

    def migrate(self) -> dict[str, Any]:
        """The schema custom resource's Create event, to the migrate function (seeding the rehearsal's rows)."""
        [(key, resource)] = [(k, r) for k, r in self.assembly.resources("Custom::RefarchSchema")]
        properties = self.resolver.resolve(key.stack, resource["Properties"])
        properties["SeedRows"] = str(self.options.rows)
        event = {
            "RequestType": "Create",
            "ServiceToken": properties["ServiceToken"],
            "ResponseURL": "http://127.0.0.1/unused",
            "StackId": f"arn:aws:cloudformation:{REGION}:stack/{key.stack}",
            "RequestId": "rehearsal",
            "LogicalResourceId": key.logical_id,
            "ResourceType": resource["Type"],
            "ResourceProperties": properties,
        }
        migrate = self.pool.by_handler(MIGRATE_HANDLER)
        self._authorize_start("Custom::RefarchSchema")
        outcome = self.pool(migrate.name, event)
        if outcome.error_type:
            raise RehearsalFailed(f"migrate: {outcome.error_type}: {outcome.error_message}")
        return {"applied": outcome.result["Data"]["Applied"], "seeded": outcome.result["Data"]["Seeded"]}

    @contextmanager
    def event_sources(self) -> Iterator[None]:
        """Each Emu event source mapping as the template configures it, feeding its function's workers."""
        pollers = []
        roles = {f.key: f.role for f in self.assembly.functions()}
        for key, mapping in self.assembly.resources("AWS::Lambda::EventSourceMapping"):
            props = mapping["Properties"]
            function = self.assembly.resource(ResourceKey(key.stack, props["FunctionName"]["Ref"]))["Properties"]
            lane_name = function["Environment"]["Variables"]["REFARCH_EMU_LANE"]
            concurrency = int(props.get("ScalingConfig", {}).get("MaximumConcurrency", 2))
            lane = Lane(
                name=lane_name,
                reserved_concurrency=int(function.get("ReservedConcurrentExecutions", concurrency)),
                max_concurrency=concurrency,
                batch_size=int(props["BatchSize"]),
                batching_window_seconds=int(props.get("MaximumBatchingWindowInSeconds", 0)),
                timeout_seconds=int(function.get("Timeout", 60)),
            )
            queue_arn = self.resolver.resolve_text(key.stack, props["EventSourceArn"])
            queue_url = self.cloud.client("sqs").get_queue_url(QueueName=queue_arn.rsplit(":", 1)[1])["QueueUrl"]
            function_key = ResourceKey(key.stack, props["FunctionName"]["Ref"])
            role = roles[function_key]
            if role is None:
                raise RehearsalFailed(f"{function_key} has an event source but no role")
            # Lambda polls the queue with the function's role: receive, delete and visibility are its grants.
            keys = self.cloud.aws.keys_for(role)
            sqs = boto3.client(
                "sqs",
                region_name=REGION,
                endpoint_url=self.cloud.endpoint,
                aws_access_key_id=keys["aws_access_key_id"],
                aws_secret_access_key=keys["aws_secret_access_key"],
            )
            pollers.append(
                EventSourcePoller(
                    sqs,
                    queue_url,
                    lane=lane,
                    region=REGION,
                    handler_function=self.pool.lambda_handler(function_name(function_key)),
                )
            )
        threads = [threading.Thread(target=p.run, name=f"esm-{p.lane.name}", daemon=True) for p in pollers]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            for poller in pollers:
                poller.stop.set()
            for thread in threads:
                thread.join(timeout=60)

    def bootstrap(self) -> dict[str, Any]:
        """The first bootstrap (StartFirstBootstrap's input), then Emu until every row is indexed."""
        self._authorize_start("Custom::StartFirstBootstrap")
        output = self.machines.run("Bootstrap", self._custom_resource_input("Custom::StartFirstBootstrap"))
        self._wait_for("every row indexed", lambda: self._counts()["indexed"] == self.options.rows)
        return {"enqueued": output["enqueued"]}

    def edit(self, stack: ExitStack) -> dict[str, Any]:
        """Start the listener and web containers; sign in and change a product over HTTP; wait until it is indexed."""
        home = self.options.home / "containers"
        log = stack.enter_context((self.options.home / "containers.log").open("a"))
        containers = {}
        for spec in self.assembly.containers():
            runtime = container_runtime(
                spec,
                self.resolver,
                secret_value=self._secret_value,
                extra={"AWS_ENDPOINT_URL": self.cloud.endpoint, **self._credentials(spec.task_role)},
                home=home,
            )
            containers[spec.name] = Container(runtime, workdir=home / spec.name / "work", log=log)
            stack.callback(containers[spec.name].stop)
        web = containers["web"]
        web.wait_until_serving()
        password_arn = next(
            self.resolver.resolve_text(s.key.stack, s.environment["REFARCH_EDIT_PASSWORD_SECRET_ARN"])
            for s in self.assembly.containers()
            if "REFARCH_EDIT_PASSWORD_SECRET_ARN" in s.environment
        )
        product_id = 1
        version = rename_product(web.url, self._secret_value(password_arn), product_id, "Rehearsed grinder")
        self._wait_for("the edit indexed", lambda: self._indexed_version(product_id) == version)
        containers["listener"].check_running()
        return {"product_id": product_id, "version": version}

    def reconcile(self) -> dict[str, Any]:
        """A report-only reconcile: the index must equal the database."""
        # The weekly rule starts it (with repairs; the rehearsal only reports): its role must be allowed to.
        self._authorize_start(self.resolver.local(self.assembly.state_machine("Reconcile").key).ref)
        report = self.machines.run("Reconcile", {"repair": False})
        if not report["clean"]:
            raise RehearsalFailed(f"reconcile found drift: {report}")
        return {"products": report["products"], "clean": report["clean"]}

    def reindex(self) -> dict[str, Any]:
        """A deploy that changes the model (new workers, as Lambda replaces them), then the re-index it starts."""
        assembly = redeployed(self.assembly, "REFARCH_OPENAI_MODEL", REINDEX_MODEL)
        self.pool.redeploy(function_runtimes(assembly, self.resolver))
        self._authorize_start("Custom::StartReindex")
        output = self.machines.run(
            "Reindex", self._custom_resource_input("Custom::StartReindex"), timeout_seconds=self._left()
        )
        if "switched" not in output:
            raise RehearsalFailed(f"the re-index did not switch: {output}")
        switched: dict[str, Any] = output["switched"]
        return switched

    # -- helpers -----------------------------------------------------------------------------

    def _authorize_start(self, starter: str) -> None:
        """Check the call that starts a step on AWS as the role that makes it: a custom resource's provider
        (`starter`: its resource type) or a rule starting a state machine (`starter`: the machine's ARN)."""
        found = [start for start in starts(self.assembly, self.resolver) if starter in (start.starter, start.resource)]
        if not found:
            raise RehearsalFailed(f"nothing in the templates starts {starter}")
        for start in found:
            try:
                self.cloud.aws.authorize_start(start)
            except CallDenied as refused:
                raise RehearsalFailed(str(refused)) from None

    def _custom_resource_input(self, resource_type: str) -> dict[str, Any]:
        """The execution input a custom resource's StartExecution call gives (its Create action's parameters)."""
        [(key, resource)] = list(self.assembly.resources(resource_type))
        create = json.loads(self.resolver.resolve_text(key.stack, resource["Properties"]["Create"]))
        execution_input: dict[str, Any] = json.loads(create["parameters"]["input"])
        return execution_input

    def _secret_value(self, arn: str) -> str:
        secret: str = self.cloud.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
        return secret

    def _admin_dsn(self) -> str:
        return with_database(self.cloud.database.dsn, self.cloud.master_database)

    def _counts(self) -> dict[str, Any]:
        conn = psycopg2.connect(self._admin_dsn())
        try:
            return sync_counts(conn)
        finally:
            conn.close()

    def _indexed_version(self, product_id: int) -> int | None:
        conn = psycopg2.connect(self._admin_dsn())
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT indexed_version FROM sync_state s JOIN index_generations g ON g.id = s.generation"
                    " WHERE g.status = 'active' AND s.product_id = %s AND s.status = 'indexed'",
                    (product_id,),
                )
                row = cur.fetchone()
            return None if row is None else int(row[0])
        finally:
            conn.close()

    def _left(self) -> float:
        return max(1.0, self.deadline - time.monotonic())

    def _wait_for(self, what: str, condition: Callable[[], bool]) -> None:
        while not condition():
            if time.monotonic() > self.deadline:
                raise RehearsalFailed(f"timed out waiting for {what}: {self._counts()}")
            time.sleep(0.5)


def rehearse_from_cdk_out(
    home: Path, *, rows: int, time_scale: float, timeout_seconds: float, stage: str = "dev"
) -> dict[str, Any]:
    """The whole rehearsal in a fresh directory under HOME/rehearsal; the summary, with `ok` and any `error`.

    The stage's templates come from the synthesis cache under HOME (synthesized first if the
    app changed since; `synth_seconds` says how long that took).
    """
    synth = synthesized_assembly(home, stage=stage)
    workdir = Path(tempfile.mkdtemp(prefix="rehearsal-", dir=_ensure(home / "rehearsal")))
    options = RehearsalOptions(home=workdir, rows=rows, time_scale=time_scale, timeout_seconds=timeout_seconds)
    rehearsal = Rehearsal(synth.assembly, options)
    try:
        summary = {"ok": True, **rehearsal.run()}
    except RehearsalFailed as err:
        summary = {"ok": False, "error": str(err), **rehearsal.partial_summary()}
    return {**summary, "synth_seconds": round(synth.seconds, 1), "workdir": str(workdir)}


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
