"""The synthesized cloud assembly (`cdk.out`), read as CloudFormation would deploy it.

`load_assembly` reads a cdk.out directory; `synthesized_assembly` synthesizes the CDK app into a
cache under the local home first (once per change of the app: the cache is keyed by a hash of
the files that shape the templates). An `Assembly` lists what runs (Lambda functions, ECS
containers, state machines) and who may do what (IAM roles with their policies), with every
value as the template holds it. A `Resolver` turns the CloudFormation intrinsics in those values
(Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select, Fn::Split, Fn::ImportValue and the AWS::
pseudo parameters) into local values, from a mapping of logical resources to local resources.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Template = dict[str, Any]

REPO_ROOT = Path(__file__).resolve().parents[2]
# What shapes the templates: the CDK app and the shared library it imports (topology, error and
# variable names, the migrations whose hash the schema resource carries).
SYNTH_INPUTS = ("app.py", "cdk.json", "cdk_app", "refarch")
SYNTH_SUFFIXES = (".py", ".sql", ".json")
# Where synthesized assemblies are cached, when not under the local home (tests share one cache).
SYNTH_CACHE_ENV = "REFARCH_SYNTH_CACHE"
# moto's default account: the one its server puts in the ARNs and queue URLs it creates.
LOCAL_ACCOUNT = "123456789012"
LOCAL_PARTITION = "aws"


class TemplateError(RuntimeError):
    """The assembly lacks something asked for, or holds a value that cannot be resolved locally."""


@dataclass(frozen=True)
class ResourceKey:
    """One resource of the assembly: its stack and logical id."""

    stack: str
    logical_id: str

    def __str__(self) -> str:
        return f"{self.stack}/{self.logical_id}"


@dataclass(frozen=True)
class FunctionSpec:
    """A Lambda function as the template declares it (values unresolved)."""

    key: ResourceKey
    handler: str
    environment: dict[str, Any]
    role: ResourceKey | None
    timeout_seconds: int
    memory_mb: int


@dataclass(frozen=True)
class ContainerSpec:
    """One container of an ECS task definition (values unresolved); `secrets` maps a variable to a secret ref."""

    key: ResourceKey  # the task definition
    name: str
    command: list[str]
    environment: dict[str, Any]
    secrets: dict[str, Any]
    task_role: ResourceKey | None


@dataclass(frozen=True)
class StateMachineSpec:
    """A state machine: its DefinitionString as synthesized (usually an Fn::Join) and its role."""

    key: ResourceKey
    definition: Any
    role: ResourceKey | None


@dataclass(frozen=True)
class RoleSpec:
    """An IAM role with the statements of its inline policies and of the AWS::IAM::Policy resources attached to it."""

    key: ResourceKey
    assume_role_policy: dict[str, Any]
    managed_policy_arns: list[Any]
    statements: list[dict[str, Any]]


@dataclass(frozen=True)
class Assembly:
    """The templates of one synthesized stage, by stack name."""

    outdir: Path
    templates: dict[str, Template]

    def resources(self, resource_type: str) -> Iterable[tuple[ResourceKey, dict[str, Any]]]:
        """(key, resource) for every resource of one type, in every stack."""
        for stack, template in self.templates.items():
            for logical_id, resource in template.get("Resources", {}).items():
                if resource["Type"] == resource_type:
                    yield ResourceKey(stack, logical_id), resource

    def resource(self, key: ResourceKey) -> dict[str, Any]:
        """The resource with this key."""
        try:
            resource: dict[str, Any] = self.templates[key.stack]["Resources"][key.logical_id]
            return resource
        except KeyError:
            raise TemplateError(f"no resource {key} in the assembly at {self.outdir}") from None

    def functions(self) -> list[FunctionSpec]:
        """Every Lambda function with a handler string."""
        found = []
        for key, resource in self.resources("AWS::Lambda::Function"):
            props = resource["Properties"]
            if "Handler" not in props:
                continue
            found.append(
                FunctionSpec(
                    key=key,
                    handler=props["Handler"],
                    environment=dict(props.get("Environment", {}).get("Variables", {})),
                    role=_getatt_key(key.stack, props.get("Role")),
                    timeout_seconds=int(props.get("Timeout", 3)),
                    memory_mb=int(props.get("MemorySize", 128)),
                )
            )
        return found

    def function(self, handler: str, **environment: str) -> FunctionSpec:
        """The one function declaring this handler (and these literal environment values, e.g. REFARCH_EMU_LANE)."""
        matches = [
            f
            for f in self.functions()
            if f.handler == handler and all(f.environment.get(k) == v for k, v in environment.items())
        ]
        if len(matches) != 1:
            raise TemplateError(
                f"expected one function with handler {handler} {environment or ''}, found {len(matches)}"
            )
        return matches[0]

    def containers(self) -> list[ContainerSpec]:
        """Every container of every ECS task definition."""
        found = []
        for key, resource in self.resources("AWS::ECS::TaskDefinition"):
            props = resource["Properties"]
            for definition in props["ContainerDefinitions"]:
                found.append(
                    ContainerSpec(
                        key=key,
                        name=definition["Name"],
                        command=list(definition.get("Command", [])),
                        environment={e["Name"]: e["Value"] for e in definition.get("Environment", [])},
                        secrets={s["Name"]: s["ValueFrom"] for s in definition.get("Secrets", [])},
                        task_role=_getatt_key(key.stack, props.get("TaskRoleArn")),
                    )
                )
        return found

    def container(self, name: str) -> ContainerSpec:
        """The container with this name."""
        for spec in self.containers():
            if spec.name == name:
                return spec
        raise TemplateError(f"no container named {name} in the assembly at {self.outdir}")

    def state_machines(self) -> list[StateMachineSpec]:
        """Every Step Functions state machine."""
        return [
            StateMachineSpec(
                key=key,
                definition=resource["Properties"]["DefinitionString"],
                role=_getatt_key(key.stack, resource["Properties"].get("RoleArn")),
            )
            for key, resource in self.resources("AWS::StepFunctions::StateMachine")
        ]

    def state_machine(self, construct: str) -> StateMachineSpec:
        """The state machine of a construct ("Bootstrap", "Reconcile", "Reindex": its logical id's prefix)."""
        matches = [m for m in self.state_machines() if m.key.logical_id.startswith(f"{construct}StateMachine")]
        if len(matches) != 1:
            raise TemplateError(f"expected one {construct} state machine, found {len(matches)}")
        return matches[0]

    def roles(self) -> list[RoleSpec]:
        """Every IAM role, with the statements granted to it."""
        attached: dict[ResourceKey, list[dict[str, Any]]] = {}
        for key, policy in self.resources("AWS::IAM::Policy"):
            for role in policy["Properties"].get("Roles", []):
                if isinstance(role, dict) and "Ref" in role:
                    statements = policy["Properties"]["PolicyDocument"]["Statement"]
                    attached.setdefault(ResourceKey(key.stack, role["Ref"]), []).extend(statements)
        found = []
        for key, resource in self.resources("AWS::IAM::Role"):
            props = resource["Properties"]
            statements = [s for p in props.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
            found.append(
                RoleSpec(
                    key=key,
                    assume_role_policy=props.get("AssumeRolePolicyDocument", {}),
                    managed_policy_arns=list(props.get("ManagedPolicyArns", [])),
                    statements=statements + attached.get(key, []),
                )
            )
        return found

    def role(self, key: ResourceKey) -> RoleSpec:
        """The role with this key."""
        for spec in self.roles():
            if spec.key == key:
                return spec
        raise TemplateError(f"no role {key} in the assembly at {self.outdir}")

    def exports(self) -> dict[str, tuple[str, Any]]:
        """Export name -> (stack, the output's unresolved value), for Fn::ImportValue."""
        found: dict[str, tuple[str, Any]] = {}
        for stack, template in self.templates.items():
            for output in template.get("Outputs", {}).values():
                name = output.get("Export", {}).get("Name")
                if name is not None:
                    found[name if isinstance(name, str) else json.dumps(name)] = (stack, output["Value"])
        return found


def _getatt_key(stack: str, value: Any) -> ResourceKey | None:
    """The resource of `{"Fn::GetAtt": [id, "Arn"]}` (how templates name a role), else None."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return ResourceKey(stack, value["Fn::GetAtt"][0])
    return None


def load_assembly(outdir: Path) -> Assembly:
    """Read every stack template of a cdk.out directory (copies: callers may edit them)."""
    outdir = Path(outdir)
    templates = {
        path.name.removesuffix(".template.json"): json.loads(path.read_text())
        for path in sorted(outdir.glob("*.template.json"))
    }
    if not templates:
        raise TemplateError(f"no templates in {outdir}: synthesize first (`make synth`)")
    return Assembly(outdir=outdir, templates=templates)


# ---------------------------------------------------------------------------------------------
# Synthesis, cached
# ---------------------------------------------------------------------------------------------


def synth_inputs_hash(root: Path = REPO_ROOT, stage: str = "dev") -> str:
    """A hash of every file that shapes the templates, and the stage."""
    digest = hashlib.sha256(stage.encode())
    for entry in SYNTH_INPUTS:
        path = root / entry
        files = sorted(p for p in path.rglob("*") if p.suffix in SYNTH_SUFFIXES) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(root)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class SynthResult:
    """Where the assembly is, and how long synthesis took (0 when the cache had it)."""

    assembly: Assembly
    seconds: float
    cached: bool


def synthesized_assembly(
    home: Path, *, stage: str = "dev", root: Path = REPO_ROOT, context: Mapping[str, str] | None = None
) -> SynthResult:
    """The stage's assembly, synthesized into HOME/cdk-cache/<stage>-<hash> once (no Lambda bundling).

    HOME is $REFARCH_SYNTH_CACHE when that is set (tests: one cache for every test's home).
    `context`: more `-c` choices (app.py: embedder, vectorBackend, rerank), part of the cache key.

    Synthesis runs `app.py` in a child process (jsii starts a Node runtime; it must not live in
    ours) with CDK_OUTDIR and the context that skips asset bundling.
    """
    cache = Path(os.environ.get(SYNTH_CACHE_ENV) or home).resolve() / "cdk-cache"
    choices = dict(sorted((context or {}).items()))
    variant = hashlib.sha256(json.dumps(choices).encode()).hexdigest()[:8] if choices else ""
    outdir = cache / f"{stage}-{synth_inputs_hash(root, stage)}{'-' + variant if variant else ''}"
    if (outdir / "manifest.json").exists():
        return SynthResult(assembly=load_assembly(outdir), seconds=0.0, cached=True)
    # One synthesis per cache entry at a time: processes wanting the same one (parallel test workers,
    # a bench and a demo) wait for the first instead of each running app.py (tens of seconds of CPU).
    outdir.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(outdir.with_name(outdir.name + ".lock")):
        if (outdir / "manifest.json").exists():
            return SynthResult(assembly=load_assembly(outdir), seconds=0.0, cached=True)
        return _synthesize(root, outdir, stage, choices)


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on `lock_file` (released when the block ends, or the process dies)."""
    import fcntl

    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _synthesize(root: Path, outdir: Path, stage: str, choices: Mapping[str, str]) -> SynthResult:
    """Run app.py into a staging directory next to `outdir`, then move it in place."""
    staging = outdir.with_name(outdir.name + f".tmp{os.getpid()}")
    cdk_context: dict[str, Any] = {**choices, "stage": stage, "aws:cdk:bundling-stacks": []}
    env = {
        **os.environ,
        "CDK_OUTDIR": str(staging),
        "CDK_CONTEXT_JSON": json.dumps(cdk_context),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "app.py"], cwd=root, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise TemplateError(f"synthesis failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    try:
        staging.replace(outdir)
    except OSError:  # another process synthesized the same inputs meanwhile: theirs is as good
        shutil.rmtree(staging)
    return SynthResult(assembly=load_assembly(outdir), seconds=time.perf_counter() - started, cached=False)


# ---------------------------------------------------------------------------------------------
# Intrinsics
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalResource:
    """What a logical resource is locally: its Ref value and its Fn::GetAtt attributes."""

    ref: str
    attributes: dict[str, str] = field(default_factory=dict)


Fallback = Callable[[ResourceKey, dict[str, Any]], LocalResource]


class Resolver:
    """Turns CloudFormation intrinsics into local values.

    `resources` maps logical resources to local ones (queue URLs, secret ARNs, state machine
    ARNs, ...). A reference to a resource not in it goes to `fallback` (given the key and the
    resource), or is a TemplateError naming it.
    """

    def __init__(
        self,
        assembly: Assembly,
        resources: Mapping[ResourceKey, LocalResource],
        *,
        region: str = "us-east-1",
        account: str = LOCAL_ACCOUNT,
        partition: str = LOCAL_PARTITION,
        fallback: Fallback | None = None,
    ) -> None:
        self.assembly = assembly
        self.resources = dict(resources)
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::Partition": partition,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
        }
        self.fallback = fallback
        self._exports = assembly.exports()

    def local(self, key: ResourceKey) -> LocalResource:
        """The local resource behind a logical one."""
        if key in self.resources:
            return self.resources[key]
        resource = self.assembly.resource(key)
        if self.fallback is None:
            raise TemplateError(f"no local resource for {key} ({resource['Type']})")
        self.resources[key] = self.fallback(key, resource)
        return self.resources[key]

    def resolve(self, stack: str, value: Any) -> Any:
        """`value` (from `stack`'s template) with every intrinsic replaced by its local value."""
        if isinstance(value, list):
            return [self.resolve(stack, v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((name, argument),) = value.items()
            intrinsic = self._INTRINSICS.get(name)
            if intrinsic is not None:
                return intrinsic(self, stack, argument)
            if name.startswith("Fn::"):
                raise TemplateError(f"{name} is not supported by the local resolver (in {stack})")
        return {k: self.resolve(stack, v) for k, v in value.items()}

    def resolve_text(self, stack: str, value: Any) -> str:
        """`value` resolved, which must be a string (environment values, ARNs, definitions)."""
        resolved = self.resolve(stack, value)
        if not isinstance(resolved, str):
            raise TemplateError(f"expected text, resolved {value!r} in {stack} to {resolved!r}")
        return resolved

    def _ref(self, stack: str, name: str) -> str:
        if name in self.pseudo:
            return str(self.pseudo[name])
        return self.local(ResourceKey(stack, name)).ref

    def _getatt(self, stack: str, argument: Any) -> str:
        logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
        key = ResourceKey(stack, logical_id)
        attributes = self.local(key).attributes
        if attribute not in attributes:
            raise TemplateError(f"no local value for {key}.{attribute}")
        return attributes[attribute]

    def _join(self, stack: str, argument: list[Any]) -> str:
        delimiter, parts = argument
        joined: str = delimiter.join(self.resolve_text(stack, p) for p in self.resolve(stack, parts))
        return joined

    def _sub(self, stack: str, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {k: self.resolve_text(stack, v) for k, v in variables.items()}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in values:
                return values[name]
            if "." in name and not name.startswith("AWS::"):
                return self._getatt(stack, name)
            return self._ref(stack, name)

        return re.sub(r"\$\{([^}]+)\}", substitute, text)

    def _select(self, stack: str, argument: list[Any]) -> Any:
        index, items = argument
        return self.resolve(stack, items)[int(self.resolve(stack, index))]

    def _split(self, stack: str, argument: list[Any]) -> list[str]:
        delimiter, text = argument
        return self.resolve_text(stack, text).split(delimiter)

    def _import(self, stack: str, argument: Any) -> Any:
        name = self.resolve_text(stack, argument)
        if name not in self._exports:
            raise TemplateError(f"Fn::ImportValue {name!r} (in {stack}): no stack exports it")
        exporting_stack, value = self._exports[name]
        return self.resolve(exporting_stack, value)

    _INTRINSICS: dict[str, Callable[[Resolver, str, Any], Any]] = {
        "Ref": _ref,
        "Fn::GetAtt": _getatt,
        "Fn::Join": _join,
        "Fn::Sub": _sub,
        "Fn::Select": _select,
        "Fn::Split": _split,
        "Fn::ImportValue": _import,
    }
