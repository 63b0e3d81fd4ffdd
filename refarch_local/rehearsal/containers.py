"""ECS containers run as ECS runs them: the task definition's command, with the image's and the template's environment.

The environment is the image's ENV (web/Dockerfile; REFARCH_HOME moved under the rehearsal's
home), the container definition's Environment resolved, each of its Secrets read from the
Secrets Manager API by ARN, and the local endpoint and credential variables. The command is the
task definition's, run from an empty working directory with the code on PYTHONPATH; a
`--bind 0.0.0.0:PORT` is moved to 127.0.0.1 and a free port (the one change, so the rehearsal
can reach it without opening a port to the network).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from refarch_local.rehearsal.template import REPO_ROOT, ContainerSpec, Resolver
from refarch_local.supervisor import free_port

DOCKERFILE = REPO_ROOT / "web" / "Dockerfile"


def image_environment(dockerfile: Path = DOCKERFILE) -> dict[str, str]:
    """The ENV instructions of a Dockerfile (`ENV A=1 \\ B=2` with comment lines between)."""
    found: dict[str, str] = {}
    lines = iter(dockerfile.read_text().splitlines())
    for line in lines:
        if not line.startswith("ENV "):
            continue
        text = line[4:]
        while text.rstrip().endswith("\\"):
            text = text.rstrip()[:-1] + " "
            following = next(lines).strip()
            text += "" if following.startswith("#") else following
        found.update(re.findall(r"(\w+)=(\S+)", text))
    return found


@dataclass(frozen=True)
class ContainerRuntime:
    """One container as it starts: its command and its whole environment."""

    name: str
    command: list[str]
    environment: dict[str, str]
    port: int | None


def container_runtime(
    spec: ContainerSpec,
    resolver: Resolver,
    *,
    secret_value: Callable[[str], str],
    extra: dict[str, str],
    home: Path,
) -> ContainerRuntime:
    """The container's command and environment, resolved for local use (see the module docstring)."""
    environment = {**image_environment(), "REFARCH_HOME": str(home / spec.name)}
    environment.update({name: resolver.resolve_text(spec.key.stack, v) for name, v in spec.environment.items()})
    environment.update(
        {name: secret_value(resolver.resolve_text(spec.key.stack, ref)) for name, ref in spec.secrets.items()}
    )
    environment.update(extra)
    environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"])
    environment["PYTHONPATH"] = str(REPO_ROOT)
    command, port = _local_bind(spec.command)
    return ContainerRuntime(name=spec.name, command=command, environment=environment, port=port)


def _local_bind(command: list[str]) -> tuple[list[str], int | None]:
    if "--bind" not in command:
        return list(command), None
    port = free_port()
    at = command.index("--bind") + 1
    return [*command[:at], f"127.0.0.1:{port}", *command[at + 1 :]], port


class Container:
    """A running container process (stopped with SIGTERM, as ECS stops a task)."""

    def __init__(self, runtime: ContainerRuntime, *, workdir: Path, log: IO[str]) -> None:
        self.runtime = runtime
        workdir.mkdir(parents=True, exist_ok=True)
        executable = shutil.which(runtime.command[0], path=runtime.environment["PATH"])
        if executable is None:
            raise FileNotFoundError(f"{runtime.name}: command {runtime.command[0]!r} not found on its PATH")
        self.process = subprocess.Popen(
            [executable, *runtime.command[1:]],
            env=runtime.environment,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT of a container that binds one."""
        return f"http://127.0.0.1:{self.runtime.port}"

    def wait_until_serving(self, path: str = "/healthz", timeout: float = 120.0) -> None:
        """Wait until the container answers HTTP (RuntimeError naming it when it exits first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.runtime.name} exited with {self.process.returncode} (see its log)")
            try:
                with urllib.request.urlopen(self.url + path, timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"{self.runtime.name} did not serve {path} within {timeout:.0f} s")

    def check_running(self) -> None:
        """RuntimeError when the container exited (a container that cannot start from its environment)."""
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.runtime.name} exited with {self.process.returncode} (see its log)")

    def stop(self) -> Any:
        """SIGTERM, then SIGKILL after 10 s."""
        self.process.terminate()
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
