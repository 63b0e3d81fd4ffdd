"""The one Lambda code asset: `lambdas/` + `refarch/` + pinned deps for linux/arm64, Python 3.12.

Bundled locally with pip's cross-platform wheel selection (no Docker needed for `cdk synth`);
Docker runs the same steps only when local bundling is impossible. The installed dependencies
are cached across synths, keyed by the requirements file, so repeated synths copy instead of
downloading.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, cast

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = Path("lambdas") / "requirements.txt"
CODE_PACKAGES = ("lambdas", "refarch")
RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64
# Lambda's python3.12 runtime is Amazon Linux 2023 (glibc 2.34): every manylinux wheel up to
# glibc 2.34 runs there. pip does not expand `manylinux_2_x` tags downwards, so list them all.
PIP_PLATFORM_ARGS = (
    *(arg for minor in range(34, 16, -1) for arg in ("--platform", f"manylinux_2_{minor}_aarch64")),
    "--only-binary=:all:",
    "--python-version",
    "3.12",
    "--implementation",
    "cp",
)
# Bump when the bundling steps change, so old cached dependency trees and asset hashes retire.
RECIPE_VERSION = "1"
IGNORED_NAMES = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def _source_files(root: Path) -> list[Path]:
    """Every file that ends up in the asset (code packages + the requirements), in a stable order."""
    files = [root / REQUIREMENTS]
    for package in CODE_PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.append(path)
    return files


def code_hash(root: Path = PROJECT_ROOT) -> str:
    """A hash of everything the bundle is built from; it changes exactly when the asset would."""
    digest = hashlib.sha256(f"{RECIPE_VERSION}|{' '.join(PIP_PLATFORM_ARGS)}".encode())
    for path in _source_files(root):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def dependency_cache_dir(requirements: Path) -> Path:
    """Where the installed dependency tree for this requirements file is kept between synths."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(requirements.read_bytes() + RECIPE_VERSION.encode() + str(PIP_PLATFORM_ARGS).encode())
    return base / "refarch" / "lambda-deps" / key.hexdigest()[:24]


def install_dependencies(requirements: Path) -> Path:
    """Install the pinned wheels for Lambda's platform once; return the cached directory."""
    target = dependency_cache_dir(requirements)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Install into a scratch dir and rename: a crashed synth never leaves a half-filled cache.
    scratch = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-compile",
                *PIP_PLATFORM_ARGS,
                "--target",
                str(scratch),
                "-r",
                str(requirements),
            ],
            check=True,
        )
        try:
            scratch.rename(target)
        except OSError:
            # Another synth finished the same install first; theirs is identical.
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


@jsii.implements(ILocalBundling)
class PipLocalBundling:
    """Build the Lambda bundle on this machine with pip; return False to fall back to Docker."""

    def __init__(self, *, project_root: Path) -> None:
        self.project_root = project_root

    def try_bundle(self, output_dir: str, options: Any) -> bool:  # noqa: ARG002 - jsii passes the options
        """Copy the cached arm64 dependencies and the code packages into `output_dir`."""
        try:
            dependencies = install_dependencies(self.project_root / REQUIREMENTS)
        except (OSError, subprocess.CalledProcessError) as error:
            print(f"local Lambda bundling failed ({error}); falling back to Docker", file=sys.stderr)
            return False
        shutil.copytree(dependencies, output_dir, dirs_exist_ok=True)
        for package in CODE_PACKAGES:
            shutil.copytree(
                self.project_root / package, Path(output_dir) / package, ignore=IGNORED_NAMES, dirs_exist_ok=True
            )
        return True


def lambda_code(project_root: Path = PROJECT_ROOT) -> lambda_.Code:
    """A fresh Code object for one stack (CDK binds an asset to the first stack that uses it)."""
    docker_steps = " && ".join(
        [
            f"pip install --no-compile -r {REQUIREMENTS} -t /asset-output",
            *(f"cp -r {package} /asset-output/" for package in CODE_PACKAGES),
            "find /asset-output -name __pycache__ -prune -exec rm -rf {} +",
        ]
    )
    return lambda_.Code.from_asset(
        str(project_root),
        # A custom hash over the few inputs that matter: CDK never fingerprints the whole repo.
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=code_hash(project_root),
        bundling=BundlingOptions(
            image=RUNTIME.bundling_image,
            platform="linux/arm64",
            command=["bash", "-c", docker_steps],
            # jsii.implements makes it an ILocalBundling at run time; mypy cannot see that.
            local=cast(ILocalBundling, PipLocalBundling(project_root=project_root)),
        ),
    )
