"""mypy checks every aws_cdk module the code imports: the list that pyproject.toml exempts from skipping
is exactly the code's aws_cdk imports.

mypy skips the ~350 aws_cdk service modules the code does not use (reading them all was a third of a
cold run). A module imported by the code but missing from the list would be seen as Any: its calls
unchecked, and nothing would say so. This test says so.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MYPY = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["mypy"]


def checked_cdk_modules() -> set[str]:
    """The aws_cdk modules the mypy configuration follows (every other aws_cdk module is skipped)."""
    followed = set()
    for override in MYPY["overrides"]:
        if override.get("follow_imports") == "normal":
            followed.update(override["module"])
    return followed


def cdk_imports(source: str) -> set[str]:
    """The aws_cdk modules a Python source imports: `aws_cdk`, `aws_cdk.x` and the modules in
    `from aws_cdk import x` (names starting in lower case are modules; the classes are capitalised)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "aws_cdk")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "aws_cdk":
            found.add(node.module)
            if node.module == "aws_cdk":
                found.update(f"aws_cdk.{alias.name}" for alias in node.names if alias.name[0].islower())
    return found


def test_the_reader_of_imports_finds_each_way_of_importing_a_module():
    source = "\n".join(
        (
            "import aws_cdk",
            "import aws_cdk.aws_sqs",
            "from aws_cdk import Stack, aws_iam as iam",
            "from aws_cdk.aws_s3 import Bucket",
        )
    )
    assert cdk_imports(source) == {"aws_cdk", "aws_cdk.aws_sqs", "aws_cdk.aws_iam", "aws_cdk.aws_s3"}


def test_every_aws_cdk_module_the_code_imports_is_type_checked_and_every_listed_one_is_used():
    imported = set()
    for package in MYPY["packages"]:
        for path in (REPO_ROOT / package).rglob("*.py"):
            imported |= cdk_imports(path.read_text())
    followed = checked_cdk_modules()
    assert imported - followed == set(), "add these to the follow_imports = normal list in pyproject.toml"
    assert followed - imported == set(), "the code no longer imports these: remove them from the list"
