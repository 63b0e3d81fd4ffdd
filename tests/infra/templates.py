"""Small readers over synthesized CloudFormation JSON: find resources, a role's grants, the state machine."""

from __future__ import annotations

import json
from typing import Any

Template = dict[str, Any]


def resources(template: Template, resource_type: str) -> dict[str, dict[str, Any]]:
    """Logical id -> resource, for every resource of one type."""
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def only(template: Template, resource_type: str) -> dict[str, Any]:
    """The properties of the single resource of a type (fails if there are none or several)."""
    found = resources(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.values()))["Properties"]


def function_by_handler(template: Template, handler: str) -> dict[str, Any]:
    """The properties of the Lambda function declaring this handler string."""
    matches = [
        r["Properties"]
        for r in resources(template, "AWS::Lambda::Function").values()
        if r["Properties"].get("Handler") == handler
    ]
    assert len(matches) == 1, f"expected one function with handler {handler}, found {len(matches)}"
    return matches[0]


def function_logical_id(template: Template, handler: str) -> str:
    """The logical id of the Lambda function declaring this handler string."""
    for logical_id, resource in resources(template, "AWS::Lambda::Function").items():
        if resource["Properties"].get("Handler") == handler:
            return logical_id
    raise AssertionError(f"no function with handler {handler}")


def function_role(template: Template, handler: str) -> str:
    """The logical id of the execution role of the function with this handler."""
    role = function_by_handler(template, handler)["Role"]
    return role["Fn::GetAtt"][0]


def container_task_role(template: Template, container_name: str) -> str:
    """The logical id of the task role of the task definition running this container."""
    for resource in resources(template, "AWS::ECS::TaskDefinition").values():
        names = [c["Name"] for c in resource["Properties"]["ContainerDefinitions"]]
        if container_name in names:
            return resource["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    raise AssertionError(f"no task definition with a container named {container_name}")


def container(template: Template, container_name: str) -> dict[str, Any]:
    """The container definition with this name."""
    for resource in resources(template, "AWS::ECS::TaskDefinition").values():
        for definition in resource["Properties"]["ContainerDefinitions"]:
            if definition["Name"] == container_name:
                return definition
    raise AssertionError(f"no container named {container_name}")


def environment(definition: dict[str, Any]) -> dict[str, Any]:
    """A Lambda's or a container's environment as a dict."""
    if "Environment" in definition and isinstance(definition["Environment"], list):
        return {item["Name"]: item["Value"] for item in definition["Environment"]}
    return definition.get("Environment", {}).get("Variables", {})


def role_statements(template: Template, role_logical_id: str) -> list[dict[str, Any]]:
    """Every Allow/Deny statement attached to a role: its inline policies and AWS::IAM::Policy resources."""
    statements: list[dict[str, Any]] = []
    role = template["Resources"][role_logical_id]["Properties"]
    for policy in role.get("Policies", []):
        statements.extend(policy["PolicyDocument"]["Statement"])
    for resource in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} in resource["Properties"].get("Roles", []):
            statements.extend(resource["Properties"]["PolicyDocument"]["Statement"])
    return statements


def managed_policies(template: Template, role_logical_id: str) -> list[str]:
    """The managed policy ARNs on a role, rendered as text."""
    role = template["Resources"][role_logical_id]["Properties"]
    return [json.dumps(arn) for arn in role.get("ManagedPolicyArns", [])]


def grants(template: Template, role_logical_id: str) -> dict[str, list[str]]:
    """Allowed action -> the resources it is allowed on (each rendered as JSON text)."""
    result: dict[str, list[str]] = {}
    for statement in role_statements(template, role_logical_id):
        assert statement["Effect"] == "Allow", "this app grants; it never relies on Deny statements"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in actions:
            result.setdefault(action, []).extend(json.dumps(t) for t in targets)
    return result


def render_join(value: Any) -> str:
    """An Fn::Join as text: `{"Fn::GetAtt": [id, ...]}` becomes `<id>`, other tokens `<token>`."""
    if isinstance(value, str):
        return value
    delimiter, parts = value["Fn::Join"]

    def render(part: Any) -> str:
        if isinstance(part, str):
            return part
        if "Fn::GetAtt" in part:
            return f"<{part['Fn::GetAtt'][0]}>"
        return "<token>"

    return delimiter.join(render(p) for p in parts)


def state_machine_id(template: Template, name: str) -> str:
    """The logical id of the one state machine whose construct is `name` ("Bootstrap", "Reconcile")."""
    (found,) = [
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::StepFunctions::StateMachine" and logical_id.startswith(name)
    ]
    return found


def state_machine_definition(template: Template, name: str = "Bootstrap") -> dict[str, Any]:
    """A state machine's definition as parsed JSON (function ARNs as `<logical id>`)."""
    props = template["Resources"][state_machine_id(template, name)]["Properties"]
    return json.loads(render_join(props["DefinitionString"]))
