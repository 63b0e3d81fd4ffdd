"""Whole-template checks: cdk-nag, cfn-lint, and no secret value anywhere in the cloud assembly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sqs as sqs
from cfnlint.api import ManualArgs, lint_by_config
from cfnlint.rules import Match

from cdk_app.config import stage_config
from cdk_app.nag import PACK, acknowledge, check_app
from tests.infra.conftest import CANARY_SECRETS, Synthesized

# cfn-lint findings accepted on CDK's own output, with the reason.
ACCEPTED_LINT = {
    # CDK adds an explicit DependsOn from each function to its role's policy, on purpose: the
    # policy (not only the role) must exist before the function is created or invoked.
    "W3005",
}

# What a leaked credential would look like in a template.
SECRET_PATTERNS = {
    "OpenAI API key": re.compile(r"sk-[A-Za-z0-9_-]{20,}"),
    "Pinecone API key": re.compile(r"pcsk_[A-Za-z0-9_]{20,}"),
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "database URL with a password": re.compile(r"postgres(ql)?://[^:\s\"]+:[^@\s\"]+@"),
}
SECRETISH_NAME = re.compile(r"(PASSWORD|SECRET|API_KEY|TOKEN)", re.IGNORECASE)


def test_cdk_nag_reports_no_unacknowledged_finding(any_stage: Synthesized) -> None:
    # Given a stage synthesized with AwsSolutions checks (synth would have raised on an error)
    report = json.loads((any_stage.outdir / "policy-validation-report.json").read_text())
    # Then the report lists no violation at all, warnings included
    assert report["pluginReports"] == []


def test_every_acknowledgement_names_the_rule_and_gives_a_reason(any_stage: Synthesized) -> None:
    # Given every acknowledgement recorded in the construct tree
    key = cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    acknowledged = {}
    for construct in any_stage.app.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == key:
                for rule, reason in entry.data.items():
                    acknowledged[f"{construct.node.path} {rule}"] = reason
    ours = {where: reason for where, reason in acknowledged.items() if f" {PACK}::" in where}
    # Then the rest are CDK's own (it pre-acknowledges cfn-lint rules on constructs it generates) ...
    assert all(" CloudFormation-Validate::" in where for where in set(acknowledged) - set(ours))
    # ... and ours are AwsSolutions rules (the app has real trade-offs), each with a real reason
    assert len(ours) >= 10
    for where, reason in ours.items():
        assert f" {PACK}::AwsSolutions-" in where, where
        assert len(reason) >= 40 and reason.endswith("."), f"{where}: {reason!r}"


def test_cdk_nag_fails_the_synth_on_an_unacknowledged_finding(tmp_path: Path) -> None:
    # Given an app with the same nag wiring and a queue that breaks two AwsSolutions rules
    app = cdk.App(outdir=str(tmp_path), context={"@aws-cdk/core:validationReportJson": True})
    stack = cdk.Stack(app, "NagProbe")
    sqs.Queue(stack, "NoDlqNoTls")
    acknowledged = sqs.Queue(stack, "AcknowledgedQueue", enforce_ssl=True)
    acknowledge(acknowledged, "AwsSolutions-SQS3", "This probe queue has no DLQ on purpose, for the test.")
    check_app(app)
    # When it synthesizes
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    # Then the findings are reported and the acknowledged one is not
    report = json.loads((tmp_path / "policy-validation-report.json").read_text())
    violations = {
        (v["ruleName"], r["constructPath"])
        for p in report["pluginReports"]
        for v in p["violations"]
        for r in v["violatingResources"]
    }
    assert violations == {
        ("AwsSolutions-SQS3", "NagProbe/NoDlqNoTls/Resource"),
        ("AwsSolutions-SQS4", "NagProbe/NoDlqNoTls/Resource"),
    }


def test_acknowledging_without_a_reason_is_refused() -> None:
    # Given a construct
    stack = cdk.Stack(cdk.App(), "ReasonProbe")
    # When acknowledging with a throwaway reason, then it is refused
    with pytest.raises(ValueError, match="real reason"):
        acknowledge(stack, "AwsSolutions-SQS3", "ok")


def test_cfn_lint_finds_no_error_in_any_template(any_stage: Synthesized) -> None:
    # Given every synthesized template of the stage
    templates = any_stage.template_files()
    assert len(templates) == len(any_stage.stacks.all())
    # When cfn-lint checks them for the stage's region
    findings = [
        f"{Path(match.filename).name}: {match}"
        for match in lint(templates, any_stage.config.region)
        if match.rule.id not in ACCEPTED_LINT
    ]
    # Then there is nothing to fix (errors and warnings alike)
    assert findings == []


def lint(templates: list[Path], region: str) -> list[Match]:
    """cfn-lint's findings on the templates: one run over them all (one file at a time loads the rules and
    builds the resource schemas' validators again for each, 4x slower, same findings)."""
    return lint_by_config(ManualArgs(templates=[str(path) for path in templates], regions=[region]))


def test_the_lint_run_reports_what_is_wrong_in_a_template(dev: Synthesized, tmp_path: Path) -> None:
    # Given one of the stage's templates with a queue added whose property has the wrong type, and one that
    # does not exist
    template = json.loads(dev.template_files()[0].read_text())
    template["Resources"]["Broken"] = {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": "soon", "No": 1}}
    broken = tmp_path / "Broken.template.json"
    broken.write_text(json.dumps(template))
    # When it is linted the way the stage's templates are, Then both are found, in that file
    findings = {(Path(m.filename).name, m.rule.id) for m in lint([broken], dev.config.region)}
    assert {("Broken.template.json", "E3012"), ("Broken.template.json", "E3002")} <= findings


def test_no_secret_value_in_any_template_or_asset_manifest(any_stage: Synthesized) -> None:
    # Given the cloud assembly's text (templates, manifests, the construct tree)
    files = [*any_stage.outdir.glob("*.json")]
    text = "\n".join(path.read_text() for path in files)
    # Then no canary from the deploying shell and nothing shaped like a credential appears
    for name, value in CANARY_SECRETS.items():
        assert value not in text, f"{name} leaked into the cloud assembly"
    for what, pattern in SECRET_PATTERNS.items():
        assert not pattern.search(text), f"something like a {what} is in the cloud assembly"


def test_secrets_are_generated_or_referenced_never_given_a_value(any_stage: Synthesized) -> None:
    # Given every Secrets Manager secret and every runtime environment variable
    secrets, env = [], {}
    for path in any_stage.template_files():
        for resource in json.loads(path.read_text())["Resources"].values():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::SecretsManager::Secret":
                secrets.append(props)
            if resource["Type"] == "AWS::Lambda::Function":
                env.update(props.get("Environment", {}).get("Variables", {}))
            if resource["Type"] == "AWS::ECS::TaskDefinition":
                for definition in props["ContainerDefinitions"]:
                    env.update({e["Name"]: e["Value"] for e in definition.get("Environment", [])})
    # Then secrets are generated by Secrets Manager, and secret-ish settings carry ARNs only
    assert secrets and all("SecretString" not in s and "GenerateSecretString" in s for s in secrets)
    secretish = {name for name in env if SECRETISH_NAME.search(name)}
    assert secretish
    assert all(name.endswith(("_SECRET_ARN", "_SECRET_ARNS")) for name in secretish), secretish


def test_unknown_stage_is_a_clear_error() -> None:
    # When asking for a stage that does not exist, then the error lists the valid ones
    with pytest.raises(ValueError, match="choose one of: dev, prod"):
        stage_config("staging")
