"""Which table a stage syncs is config (`source`, `-c source=...`), checked at synth and given to every runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdk_app import config as cdk_config
from cdk_app import data_stack
from cdk_app.config import DEV, with_context
from cdk_app.reindex_stack import configured_generation
from refarch.source import SourceError
from refarch.source import definition as source_definition
from tests.infra.conftest import Synthesized
from tests.infra.templates import container, environment, resources


def runtime_environments(stage: Synthesized) -> dict[str, dict[str, str]]:
    """Every function's and container's environment that reaches the database, by name."""
    found: dict[str, dict[str, str]] = {}
    for stack in stage.stacks.all():
        template = stage.template_json(stack)
        for logical_id, function in resources(template, "AWS::Lambda::Function").items():
            found[f"{stack.stack_name}/{logical_id}"] = environment(function["Properties"])
        for task in resources(template, "AWS::ECS::TaskDefinition").values():
            for definition in task["Properties"]["ContainerDefinitions"]:
                found[f"{stack.stack_name}/{definition['Name']}"] = environment(container(template, definition["Name"]))
    return {name: env for name, env in found.items() if "REFARCH_DATABASE_SECRET_ARN" in env}


@pytest.mark.parametrize(("stage_name", "source"), [("dev", "products"), ("variant", "articles")])
def test_every_runtime_is_told_the_stages_source(stage_name: str, source: str, request: pytest.FixtureRequest) -> None:
    stage: Synthesized = request.getfixturevalue(stage_name)
    envs = runtime_environments(stage)
    # The migrate function, Emu's lanes, the listener, bootstrap, reconcile, re-index and the web task
    assert len(envs) >= 8, sorted(envs)
    assert {name: env.get("REFARCH_SOURCE") for name, env in envs.items()} == dict.fromkeys(envs, source)


def test_the_command_line_chooses_the_source() -> None:
    assert with_context(DEV, source="articles").search.source == "articles"
    assert DEV.search.source == "products"


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("recipes", "a stage deploys a definition by name, from refarch/source/definitions/"),
        ("../../etc/passwd", "a stage deploys a definition by name"),
        ("docs/mine.toml", "copy your .toml there and name it without the extension"),
    ],
)
def test_a_source_that_is_not_a_shipped_definition_stops_synth(source: str, reason: str) -> None:
    with pytest.raises(SourceError, match=reason):
        with_context(DEV, source=source)


def test_an_invalid_shipped_definition_stops_synth_naming_every_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a definition in the shipped folder whose template names an unknown column and whose key type is unsupported
    (tmp_path / "broken.toml").write_text(
        'table = "public.notes"\nkey = { column = "id", type = "jsonb" }\nembed = "{title} {summary}"\n'
        'title = "title"\n[columns.title]\nlexical = "A"\n'
    )
    shipped = lambda name: tmp_path / f"{name}.toml"  # noqa: E731
    monkeypatch.setattr(cdk_config, "builtin_path", shipped)
    monkeypatch.setattr(source_definition, "builtin_path", shipped)
    # When a stage names it, Then synth stops with both problems
    with pytest.raises(SourceError) as refused:
        with_context(DEV, source="broken")
    assert "key.type 'jsonb' is not supported: a key must be one of bigint, uuid, text" in refused.value.problems
    assert "embed names {summary}, which is not a column under [columns]" in refused.value.problems


def test_an_edited_definition_reruns_the_migration_and_a_new_text_starts_a_reindex_on_deploy(
    dev: Synthesized, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the dev stage's schema resource and re-index start: both carry what the deploy applies
    schema = next(iter(resources(dev.template_json(dev.stacks.data), "Custom::RefarchSchema").values()))
    assert schema["Properties"]["Source"] == "products"
    assert schema["Properties"]["SourceDefinitionHash"] == data_stack.source_definition_hash("products")
    assert configured_generation(dev.config)["source_text"] == source_definition.load("products").fingerprint("text")
    # And a copy of the products definition in the shipped folder
    original = source_definition.builtin_path("products").read_text()
    shipped = lambda name: tmp_path / f"{name}.toml"  # noqa: E731
    monkeypatch.setattr(source_definition, "builtin_path", shipped)
    monkeypatch.setattr(data_stack, "builtin_path", shipped)
    shipped("products").write_text(original)
    before = (data_stack.source_definition_hash("products"), configured_generation(dev.config))
    assert before == (schema["Properties"]["SourceDefinitionHash"], configured_generation(dev.config))
    # When only what the page shows changes, Then the migration runs again (the schema resource changes)
    # and no re-index starts (the start call's input is the same)
    shipped("products").write_text(original.replace('label = "SKU"', 'label = "Code"', 1))
    assert 'label = "Code"' in shipped("products").read_text()
    assert data_stack.source_definition_hash("products") != before[0]
    assert configured_generation(dev.config) == before[1]
    # When the embedded text changes, Then the start call's input changes too: the deploy starts a re-index
    definition = source_definition.load("products")
    shipped("products").write_text(original.replace(f'embed = "{definition.embed}"', 'embed = "{name}"', 1))
    assert source_definition.load("products").embed == "{name}"
    assert configured_generation(dev.config)["source_text"] != before[1]["source_text"]
    assert data_stack.source_definition_hash("products") != before[0]
