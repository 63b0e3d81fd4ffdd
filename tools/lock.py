"""`make lock`: resolve pyproject.toml's dependencies once, then write every requirement file from it.

One resolution, several installs. `requirements.lock` is the resolution: every extra at once, with
hashes, for the machine the project runs on locally (Linux x86_64, CPython 3.11). Each requirement
file is then compiled from pyproject.toml for its own extras and platform *under the lock's pins*
(`--constraint`), so every file names the lock's versions and hashes and nothing else (a package
that only another platform needs would be missing from the lock: tests/unit/test_requirement_files.py
fails on it rather than letting a file pick its version alone):

| file                        | extras        | installed by                           | platform              |
| --------------------------- | ------------- | -------------------------------------- | --------------------- |
| requirements.txt            | local         | `make setup` (the whole system)        | linux x86_64, py3.11  |
| requirements-dev.txt        | dev           | `make setup` (tests, linters, CDK)     | linux x86_64, py3.11  |
| requirements-container.txt  | web           | web/Dockerfile (web + listener image)  | linux, py3.12         |
| lambdas/requirements.txt    | lambda        | the Lambda bundle (lambda_code.py)     | linux arm64, py3.12   |

uv, not pip-tools: pip-tools resolves only for the interpreter running it, and the Lambda file must
be resolved for linux/arm64 CPython 3.12 from this x86_64 machine (`--python-platform`).

torch: the local extra pins torch's CPU build, `2.13.0+cpu`, a file that lies in a find-links folder
on the project's machines (pip finds it through its config). PyPI has no `+cpu` builds, and its
2.13.0 pulls several GB of CUDA libraries. uv reads no pip config, so the lock passes that folder
(`TORCH_WHEELS`, `/opt/wheels` by default; a find-links page of PyTorch's CPU wheels does the same
elsewhere): the lock gets that file's hash and none of the CUDA packages.

Pins are kept between runs (uv prefers the versions already in the output files); `make lock
ARGS=--upgrade` moves everything to the newest versions the ranges allow.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCK = Path("requirements.lock")
TORCH_WHEELS = os.environ.get("TORCH_WHEELS", "/opt/wheels")
# The project's machines: Debian 12 (glibc 2.36), CPython 3.11.
LOCAL_PLATFORM = ("3.11", "x86_64-manylinux_2_36")


@dataclass(frozen=True)
class Target:
    """One generated requirement file: which extras it installs, for which Python and platform, for whom."""

    path: Path
    extras: tuple[str, ...]
    python_version: str
    python_platform: str
    role: str


TARGETS = (
    Target(Path("requirements.txt"), ("local",), *LOCAL_PLATFORM, "the whole system, locally (make setup)"),
    Target(
        Path("requirements-dev.txt"),
        ("dev",),
        *LOCAL_PLATFORM,
        "tests, linters, type stubs, the CDK app (make setup, with requirements.txt)",
    ),
    # The image is python:3.12-slim, x86_64 by default (cdk_app/config.py); every package here has
    # the same dependencies on arm64, and the hashes cover every wheel of each pinned version.
    Target(
        Path("requirements-container.txt"),
        ("web",),
        "3.12",
        "x86_64-manylinux_2_36",
        "the web + listener image (web/Dockerfile)",
    ),
    # Lambda's python3.12 runtime is Amazon Linux 2023 (glibc 2.34) on arm64.
    Target(
        Path("lambdas") / "requirements.txt",
        ("lambda",),
        "3.12",
        "aarch64-manylinux_2_34",
        "the Lambda bundle (cdk_app/constructs/lambda_code.py)",
    ),
)


PROJECT = "refarch"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[^\s;]+)$")


@dataclass(frozen=True)
class Pin:
    """One package as a generated file pins it: an exact version and the hashes pip may accept for it."""

    version: str
    hashes: frozenset[str]


def read_pins(text: str) -> dict[str, Pin]:
    """Canonical package name -> its pin, for every requirement of a generated file.

    Raises ValueError on a requirement that is not an exact pin (a hand edit: pip would resolve it).
    """
    pins: dict[str, Pin] = {}
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        spec, *hashes = line.split(" --hash=")
        match = PIN.match(spec.strip())
        if match is None:
            raise ValueError(f"not an exact pin: {spec.strip()!r}")
        pins[canonicalize_name(match["name"])] = Pin(match["version"], frozenset(h.strip() for h in hashes))
    return pins


def declared_requirements(pyproject_text: str, extras: tuple[str, ...]) -> list[Requirement]:
    """The core dependencies plus those of `extras`, following the project's references to its own extras."""
    project = tomllib.loads(pyproject_text)["project"]
    requirements = [Requirement(line) for line in project.get("dependencies", [])]
    pending, seen = list(extras), set[str]()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for line in project["optional-dependencies"][extra]:
            requirement = Requirement(line)
            if canonicalize_name(requirement.name) == PROJECT:
                pending.extend(requirement.extras)
            else:
                requirements.append(requirement)
    return requirements


def declaration_digest(pyproject_text: str) -> str:
    """A digest of everything pyproject.toml declares about dependencies: it moves exactly when a relock is due."""
    project = tomllib.loads(pyproject_text)["project"]
    declared = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
    }
    return hashlib.sha256(json.dumps(declared, sort_keys=True).encode()).hexdigest()[:16]


def header(target: Target | None, digest: str) -> str:
    """The comment block that opens a generated file: what it is, how it was made, what it was made from."""
    if target is None:
        python_version, python_platform = LOCAL_PLATFORM
        what = f"The lock: every extra of pyproject.toml, resolved for CPython {python_version} on {python_platform}."
    else:
        extras = ",".join(target.extras)
        what = (
            f"For {target.role}: pyproject.toml [{extras}], CPython {target.python_version} on "
            f"{target.python_platform}, pinned to {LOCK}."
        )
    return (
        "# GENERATED by `make lock` (tools/lock.py) with uv: do not edit. Change pyproject.toml, then run\n"
        "# `make lock`; tests/unit/test_requirement_files.py fails when this file drifts from it.\n"
        f"# {what}\n"
        f"# pyproject.toml dependency declarations: {digest}\n"
    )


def compile_requirements(
    output: Path, extras: tuple[str, ...], python_version: str, python_platform: str, extra_args: list[str]
) -> None:
    """Run `uv pip compile` on pyproject.toml into `output` (hashes, `# via` notes, no uv header)."""
    command = [
        sys.executable,
        "-m",
        "uv",
        "pip",
        "compile",
        "pyproject.toml",
        *(arg for extra in extras for arg in ("--extra", extra)),
        "--python-version",
        python_version,
        "--python-platform",
        python_platform,
        "--find-links",
        TORCH_WHEELS,
        "--generate-hashes",
        "--no-header",
        "--quiet",
        "--output-file",
        str(output),
        *extra_args,
    ]
    subprocess.run(command, cwd=REPO_ROOT, check=True)


def write_with_header(path: Path, text: str) -> None:
    """Put the generated-file header on top of uv's output."""
    absolute = REPO_ROOT / path
    absolute.write_text(text + absolute.read_text())


def main(argv: list[str] | None = None) -> None:
    """Resolve the lock, then every requirement file under it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="newest versions the ranges allow, not the current pins")
    args = parser.parse_args(argv)
    digest = declaration_digest((REPO_ROOT / "pyproject.toml").read_text())
    all_extras = tuple(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    compile_requirements(LOCK, all_extras, *LOCAL_PLATFORM, ["--upgrade"] if args.upgrade else [])
    write_with_header(LOCK, header(None, digest))
    for target in TARGETS:
        # Under the lock's pins: a file never picks a version of its own (a newer target file would
        # otherwise keep its old pins, as uv prefers what the output file already holds).
        compile_requirements(
            target.path, target.extras, target.python_version, target.python_platform, ["--constraint", str(LOCK)]
        )
        write_with_header(target.path, header(target, digest))
        print(f"wrote {target.path}")


if __name__ == "__main__":
    main()
