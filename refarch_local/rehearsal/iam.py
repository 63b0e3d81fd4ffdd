"""Every runtime's AWS calls authorized against its role's policies from the synthesized templates.

`IamEnforcedAws.start(state_dir)` starts the local AWS API (moto's server, one process,
refarch_local/rehearsal/iam_server.py) with IAM enforced on every request. Its admin credentials
create the local resources; then `grant_runtime_roles(assembly, resolver)` gives each runtime role
of the templates (each Lambda function's role, each container's task role, each state machine's
role) an IAM user carrying exactly that role's policy statements, resolved to the local resources.
`credentials_for(role)` is the environment a runtime's process runs with: calls it makes with
them are authorized on their action and resource like the role's on AWS. A call made as a role
where no request reaches the server (a state machine's task routed to a local handler) is checked
with `authorize(role, action, resource)` (`StateMachines(..., authorize=aws.authorize)`).
`counts()` is (calls checked, calls denied) over every runtime role's calls, and `denials()`
names the role, action and resource of each refusal (`assert_no_denials()` fails with them all).

The AWS managed policies on the Lambda roles (AWSLambdaBasicExecutionRole,
AWSLambdaVPCAccessExecutionRole) are not granted: they cover what the Lambda service does for a
function (its log streams, its network interfaces), never a call our code makes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import requests

from refarch_local.rehearsal.iam_server import AUTHORIZE_PATH, LEDGER_PATH
from refarch_local.rehearsal.template import LOCAL_ACCOUNT, Assembly, LocalResource, Resolver, ResourceKey
from refarch_local.supervisor import free_port

REGION = "us-east-1"
START_TIMEOUT_SECONDS = 30.0


class CallDenied(PermissionError):
    """A call made as a role (by a local stand-in for an AWS service) that the role's policy does not allow."""


class PermissionsMissing(AssertionError):
    """A runtime made a call its role does not allow (each denial names the role, action and resource)."""


@dataclass(frozen=True)
class Denial:
    """One refused call: the runtime role, the IAM action and the resource ARN ("*" where IAM names none)."""

    role: str
    action: str
    resource: str
    reason: str

    def __str__(self) -> str:
        return f"role {self.role} is not allowed {self.action} on {self.resource}"


# The logical id CDK gives the AwsCustomResource provider's function and role in every stack that has one.
AWS_CUSTOM_RESOURCE_PROVIDER = "AWS679f53fac002430cb0da5b7982bd2287"


def role_user_name(role: ResourceKey) -> str:
    """The IAM user standing for a role: its logical id (unique in the assembly, at most 64 characters);
    the AwsCustomResource provider's role, named alike in every stack, is told apart by its stack."""
    if role.logical_id.startswith(AWS_CUSTOM_RESOURCE_PROVIDER):
        return f"{role.logical_id[:47]}-{hashlib.sha256(role.stack.encode()).hexdigest()[:16]}"
    return role.logical_id


def local_role(role: ResourceKey) -> LocalResource:
    """What a role is locally, for a Resolver: state machines then run as (and are checked as) its user."""
    name = role_user_name(role)
    return LocalResource(ref=name, attributes={"Arn": f"arn:aws:iam::{LOCAL_ACCOUNT}:role/{name}"})


def runtime_roles(assembly: Assembly) -> list[ResourceKey]:
    """The roles our code runs as: each handler's function role, each container's task role, each state machine's."""
    roles = [f.role for f in assembly.functions() if f.handler.startswith("lambdas.")]
    roles += [c.task_role for c in assembly.containers()]
    roles += [m.role for m in assembly.state_machines()]
    found = sorted({r for r in roles if r is not None}, key=str)
    names = [role_user_name(r) for r in found]
    if len(set(names)) != len(names) or any(len(n) > 64 for n in names):
        raise ValueError(f"runtime role logical ids must be unique and at most 64 characters: {names}")
    return found


@dataclass(frozen=True)
class Start:
    """A call AWS makes as a role of the templates to start our code: a custom resource's provider on
    deploy (starting a state machine, invoking the migrate function) or a schedule's rule."""

    starter: str  # the custom resource's type, or the rule's logical id
    role: ResourceKey
    action: str
    resource: str  # resolved

    def __str__(self) -> str:
        return f"{self.starter}: role {role_user_name(self.role)} {self.action} on {self.resource}"


def starts(assembly: Assembly, resolver: Resolver) -> list[Start]:
    """Every Start of the templates: each custom resource's provider (its function's role) calling what it
    starts, and each rule target a role starts (a state machine on a schedule)."""
    functions = {f.key: f for f in assembly.functions()}
    found = []
    for resource_type in ("Custom::RefarchSchema", "Custom::StartFirstBootstrap", "Custom::StartReindex"):
        for key, resource in assembly.resources(resource_type):
            props = resource["Properties"]
            provider_key = _getatt(key.stack, props["ServiceToken"])
            if provider_key is None:
                raise ValueError(f"{resource_type}'s ServiceToken names no function of the stack")
            provider = functions[provider_key]
            if provider.role is None:
                raise ValueError(f"{resource_type}'s provider {provider_key} has no role")
            if "Create" in props:  # an AwsCustomResource: an SDK call
                call = json.loads(resolver.resolve_text(key.stack, props["Create"]))
                action = f"{_IAM_PREFIX[call['service']]}:{call['action'][0].upper()}{call['action'][1:]}"
                target = str(call["parameters"]["stateMachineArn"])
            else:  # a Provider framework: its onEvent function invokes the user's function
                action = "lambda:InvokeFunction"
                target = resolver.resolve_text(key.stack, provider.environment["USER_ON_EVENT_FUNCTION_ARN"])
            found.append(Start(resource_type, provider.role, action, target))
    for key, rule in assembly.resources("AWS::Events::Rule"):
        for target in rule["Properties"].get("Targets", []):
            role = _getatt(key.stack, target.get("RoleArn"))
            if role is not None:  # a Lambda target is allowed by the function's resource policy instead
                arn = resolver.resolve_text(key.stack, target["Arn"])
                action = "states:StartExecution" if ":stateMachine:" in arn else "lambda:InvokeFunction"
                found.append(Start(key.logical_id, role, action, arn))
    return found


# IAM's service prefix for the services AwsCustomResource calls here.
_IAM_PREFIX = {"SFN": "states", "Lambda": "lambda"}


def _getatt(stack: str, value: Any) -> ResourceKey | None:
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return ResourceKey(stack, value["Fn::GetAtt"][0])
    return None


def policy_document(assembly: Assembly, role: ResourceKey, resolver: Resolver) -> dict[str, Any]:
    """The role's statements (inline and attached policies) as one document, resolved to local resources."""
    statements = resolver.resolve(role.stack, assembly.role(role).statements)
    return {"Version": "2012-10-17", "Statement": statements}


class IamEnforcedAws:
    """The local AWS API with IAM enforced, and one IAM user per runtime role."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, state_dir: Path, admin: dict[str, str]) -> None:
        self.process = process
        self.endpoint = f"http://127.0.0.1:{port}"
        self.state_dir = state_dir
        self.admin = admin
        self._keys: dict[str, dict[str, str]] = {}

    @classmethod
    def start(cls, state_dir: Path, *, port: int | None = None) -> IamEnforcedAws:
        """Start the server process (every request checked from the first) and wait until it answers."""
        port = port or free_port()
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "denials.jsonl").unlink(missing_ok=True)
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0", "MOTO_PORT": str(port)}
        command = [sys.executable, "-m", "refarch_local.rehearsal.iam_server", "--port", str(port)]
        process = subprocess.Popen([*command, "--state-dir", str(state_dir)], env=env)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the IAM-enforcing AWS server exited with {process.returncode} (its stderr above)")
            try:
                requests.get(f"http://127.0.0.1:{port}{LEDGER_PATH}", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    process.kill()
                    raise RuntimeError(f"the IAM-enforcing AWS server did not answer on port {port}") from None
                time.sleep(0.1)
        admin = json.loads((state_dir / "admin.json").read_text())
        return cls(process, port, state_dir, admin)

    def admin_client(self, service: str) -> Any:
        """A boto3 client with the admin's keys, for setting up local resources (not a runtime's calls)."""
        make_client: Any = boto3.client  # any service by name: the typed overloads want a literal
        return make_client(service, region_name=REGION, endpoint_url=self.endpoint, **self.admin)

    def grant(self, role: ResourceKey, document: dict[str, Any]) -> None:
        """Create (or replace) the role's user with exactly this policy document, and keys for it."""
        iam, name = self.admin_client("iam"), role_user_name(role)
        if name not in self._keys:
            iam.create_user(UserName=name)
            key = iam.create_access_key(UserName=name)["AccessKey"]
            self._keys[name] = {
                "aws_access_key_id": key["AccessKeyId"],
                "aws_secret_access_key": key["SecretAccessKey"],
            }
        iam.put_user_policy(UserName=name, PolicyName="role-policy", PolicyDocument=json.dumps(document))

    def grant_runtime_roles(self, assembly: Assembly, resolver: Resolver) -> list[ResourceKey]:
        """Give every runtime role of the assembly, and every role that starts one (`starts`), its user and
        policy (resources must exist locally first)."""
        roles = runtime_roles(assembly)
        roles += sorted({start.role for start in starts(assembly, resolver)} - set(roles), key=str)
        for role in roles:
            self.grant(role, policy_document(assembly, role, resolver))
        return roles

    def authorize_start(self, start: Start) -> None:
        """Check (and count) a Start's call as its role; CallDenied names the starter, role, action and resource."""
        try:
            self.authorize(role_user_name(start.role), start.action, start.resource)
        except CallDenied as refused:
            raise CallDenied(f"{start}: refused ({refused})") from None

    def keys_for(self, role: ResourceKey) -> dict[str, str]:
        """The role's access keys as boto3 client arguments (aws_access_key_id, aws_secret_access_key)."""
        try:
            return dict(self._keys[role_user_name(role)])
        except KeyError:
            raise KeyError(f"no user for role {role}: grant it first") from None

    def user_for_access_key(self, access_key_id: str) -> str | None:
        """The runtime user (role) whose keys these are, or None (a stand-in serving AWS calls itself asks)."""
        return next((name for name, keys in self._keys.items() if keys["aws_access_key_id"] == access_key_id), None)

    def credentials_for(self, role: ResourceKey) -> dict[str, str]:
        """The environment variables a runtime running as this role needs to reach the local AWS API."""
        keys = self.keys_for(role)
        return {
            "AWS_ACCESS_KEY_ID": keys["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": keys["aws_secret_access_key"],
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }

    def authorize(self, role: str, action: str, resource: str) -> None:
        """Check (and count) a call made as a role (its ARN or user name) where no request reaches the
        server: a state machine's task routed to a local handler. CallDenied says why it is refused."""
        call = {"role": role.rsplit("/", 1)[-1], "action": action, "resource": resource}
        reply = requests.post(f"{self.endpoint}{AUTHORIZE_PATH}", json=call, timeout=5)
        reply.raise_for_status()
        refusal = reply.json()["refusal"]
        if refusal is not None:
            raise CallDenied(refusal)

    def counts(self) -> tuple[int, int]:
        """(calls checked, calls denied) on runtime users' requests so far."""
        reply = requests.get(f"{self.endpoint}{LEDGER_PATH}", timeout=5)
        reply.raise_for_status()
        counts = reply.json()
        return int(counts["checked"]), int(counts["denied"])

    def denials(self) -> list[Denial]:
        """Every refused call so far, oldest first."""
        log = self.state_dir / "denials.jsonl"
        if not log.exists():
            return []
        return [Denial(**json.loads(line)) for line in log.read_text().splitlines() if line]

    def assert_no_denials(self) -> None:
        """Raise PermissionsMissing naming every refused call's role, action and resource."""
        denied = self.denials()
        if denied:
            raise PermissionsMissing("calls refused by IAM:\n" + "\n".join(f"  {d}" for d in denied))

    def stop(self) -> None:
        """Stop the server process."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
