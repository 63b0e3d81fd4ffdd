"""A synthesized CDK app read back: every template resource with its construct path, references
resolved across stacks (Ref, Fn::GetAtt, and Fn::ImportValue through the exports)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import CfnElement, Stack

# Construct ids our own constructs wrap a resource in; they say nothing about what it is.
WRAPPER_SEGMENTS = ("Function", "StateMachine")


@dataclass(frozen=True)
class TemplateResource:
    """One template resource with where it lives."""

    stack: str  # role, e.g. "Emu"
    logical_id: str
    construct_path: str  # inside its stack, e.g. "EmuFunction/Resource"
    type: str
    properties: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        """(stack role, logical id): unique across the app."""
        return (self.stack, self.logical_id)

    @property
    def construct_id(self) -> str:
        """The id of the top-level construct that made it (the first segment of its path)."""
        return self.construct_path.split("/")[0]

    @property
    def name_path(self) -> list[str]:
        """Its construct path without CDK's generic segments: "Emu/Function/Function/Resource" -> ["Emu"]."""
        segments = [s for s in self.construct_path.split("/") if s not in ("Resource", "Default")]
        named: list[str] = []
        for segment in segments:
            if segment not in WRAPPER_SEGMENTS and (not named or named[-1] != segment):
                named.append(segment)
        return named or segments[:1]


def humanize(construct_id: str) -> str:
    """ "EmuBulkFunction" -> "Emu bulk function"; "WebLB" -> "Web LB"."""
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+", construct_id)
    return " ".join([words[0], *(w if w.isupper() else w.lower() for w in words[1:])]) if words else construct_id


class SynthesizedApp:
    """The synthesized app's resources, with references resolved across stacks (exports and imports)."""

    def __init__(self, stacks: list[Stack], outdir: Path, prefix: str) -> None:
        self.prefix = prefix
        self.resources: dict[tuple[str, str], TemplateResource] = {}
        self.exports: dict[str, tuple[str, str]] = {}
        for stack in stacks:
            role = self.role_of(stack.stack_name)
            template = json.loads((outdir / stack.template_file).read_text())
            paths = {
                stack.resolve(element.logical_id): element.node.path.removeprefix(stack.node.path + "/")
                for element in stack.node.find_all()
                if isinstance(element, CfnElement)
            }
            for logical_id, resource in template["Resources"].items():
                self.resources[(role, logical_id)] = TemplateResource(
                    role,
                    logical_id,
                    paths.get(logical_id, logical_id),
                    resource["Type"],
                    resource.get("Properties", {}),
                )
            for output in template.get("Outputs", {}).values():
                if "Export" in output:
                    found = list(self.local_refs(output["Value"]))
                    if found:
                        self.exports[output["Export"]["Name"]] = (role, found[0])

    def role_of(self, stack_name: str) -> str:
        """ "Refarch-dev-Emu" -> "Emu"."""
        return stack_name.removeprefix(self.prefix + "-")

    @staticmethod
    def local_refs(value: Any) -> Iterator[str]:
        """Logical ids referred to by Ref / Fn::GetAtt anywhere inside `value`."""
        if isinstance(value, dict):
            if "Ref" in value and isinstance(value["Ref"], str) and not value["Ref"].startswith("AWS::"):
                yield value["Ref"]
            if "Fn::GetAtt" in value:
                yield value["Fn::GetAtt"][0]
            for inner in value.values():
                yield from SynthesizedApp.local_refs(inner)
        elif isinstance(value, list):
            for inner in value:
                yield from SynthesizedApp.local_refs(inner)

    def refs(self, stack: str, value: Any) -> set[tuple[str, str]]:
        """Resources referred to inside `value` (a property of a resource in `stack`), imports included."""
        found = {(stack, logical_id) for logical_id in self.local_refs(value)}
        found |= {self.exports[name] for name in self._imports(value) if name in self.exports}
        return {key for key in found if key in self.resources}

    @staticmethod
    def _imports(value: Any) -> Iterator[str]:
        """Export names imported (Fn::ImportValue of a plain name) anywhere inside `value`."""
        if isinstance(value, dict):
            if isinstance(value.get("Fn::ImportValue"), str):
                yield value["Fn::ImportValue"]
            for inner in value.values():
                yield from SynthesizedApp._imports(inner)
        elif isinstance(value, list):
            for inner in value:
                yield from SynthesizedApp._imports(inner)

    def of_type(self, resource_type: str) -> list[TemplateResource]:
        """Every resource of one CloudFormation type, in a stable order."""
        return sorted((r for r in self.resources.values() if r.type == resource_type), key=lambda r: r.key)

    def grants(self, role_key: tuple[str, str]) -> Iterator[tuple[str, set[tuple[str, str]], Any]]:
        """(action, resources in the app, the statement's Resource as written) for every statement of every
        policy attached to this role."""
        for policy in self.of_type("AWS::IAM::Policy"):
            if role_key not in self.refs(policy.stack, policy.properties.get("Roles", [])):
                continue
            for statement in policy.properties["PolicyDocument"]["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                targets = self.refs(policy.stack, statement.get("Resource", []))
                for action in actions:
                    yield action, targets, statement.get("Resource")
