"""Packaging: the Emu Lambda asset as really bundled, and the real CDK CLI synthesizing the app."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from cdk_app.config import DEV
from cdk_app.constructs.lambda_code import code_hash
from refarch.lanes import topology
from tests.infra.conftest import Synthesized, synthesize
from tests.infra.templates import function_by_handler

REPO_ROOT = Path(__file__).resolve().parents[2]
CDK_CLI = REPO_ROOT / "node_modules" / ".bin" / "cdk"
ELF_MACHINE_AARCH64 = 183
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024


def elf_machine(path: Path) -> int:
    """The e_machine field of an ELF file (which CPU it is built for)."""
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path} is not an ELF file"
    return struct.unpack("<H", header[18:20])[0]


@pytest.fixture(scope="module")
def bundled_dev(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The dev stage with the Emu stack's Lambda code really bundled (pip, linux/arm64, cached)."""
    return synthesize(DEV, tmp_path_factory.mktemp("cdk-bundled"), bundle_stacks=[f"{DEV.stack_prefix}-Emu"])


def emu_asset_dir(synth: Synthesized) -> Path:
    """The staged directory behind the Emu function's code."""
    s3_key = function_by_handler(synth.template_json(synth.stacks.emu), topology.EMU_HANDLER, lane="live")["Code"][
        "S3Key"
    ]
    manifest = json.loads((synth.outdir / f"{synth.stacks.emu.stack_name}.assets.json").read_text())
    for asset in manifest["files"].values():
        if any(d["objectKey"] == s3_key for d in asset["destinations"].values()):
            return synth.outdir / asset["source"]["path"]
    raise AssertionError(f"no asset uploads to {s3_key}")


def test_emu_asset_holds_the_handler_the_library_and_arm64_wheels(bundled_dev: Synthesized) -> None:
    # Given the bundled Emu asset
    asset = emu_asset_dir(bundled_dev)
    # Then the handler string resolves to a file, the shared library and its migrations are there
    module, _, function = topology.EMU_HANDLER.rpartition(".")
    handler_file = asset / (module.replace(".", "/") + ".py")
    assert f"def {function}(" in handler_file.read_text()
    assert (asset / "refarch" / "__init__.py").is_file()
    assert list((asset / "refarch" / "db" / "migrations").glob("*.sql"))
    # And the compiled dependencies are CPython 3.12 builds for aarch64 (Lambda arm64)
    for package in ("psycopg2", "pydantic_core"):
        extensions = list((asset / package).glob("*.cpython-312-aarch64-linux-gnu.so"))
        assert extensions, f"no aarch64 cp312 extension in {package}"
        assert all(elf_machine(so) == ELF_MACHINE_AARCH64 for so in extensions)
    for package in ("openai", "pinecone", "pgvector", "aws_lambda_powertools", "pydantic_settings", "tenacity"):
        assert (asset / package).is_dir(), f"{package} missing from the bundle"


def test_emu_asset_leaves_out_local_only_and_build_leftovers(bundled_dev: Synthesized) -> None:
    # Given the bundled Emu asset
    asset = emu_asset_dir(bundled_dev)
    files = [p for p in asset.rglob("*") if p.is_file()]
    # Then nothing local-only (torch, the embedded database, the local SQS) or stale is shipped
    top_level = {p.name for p in asset.iterdir()}
    forbidden = {"torch", "sentence_transformers", "pgserver", "moto", "flask", "web", "cdk_app", "tests"}
    assert not top_level & (forbidden | {"refarch_local", "refarch_cli"})
    # The runtime library is exactly what Lambdas run: no local runtime or dev tools inside it either
    assert not (asset / "refarch" / "local").exists() and not list((asset / "refarch").rglob("*standin*"))
    assert not [p for p in files if "__pycache__" in p.relative_to(asset).parts]
    assert sum(p.stat().st_size for p in files) < LAMBDA_UNZIPPED_LIMIT_BYTES


def test_asset_hash_follows_the_code(tmp_path: Path) -> None:
    # Given a copy of the code packages
    for name in ("lambdas", "refarch"):
        shutil.copytree(REPO_ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_hash(tmp_path)
    # When a bytecode cache appears the hash stays; when a handler changes it moves
    (tmp_path / "lambdas" / "__pycache__").mkdir()
    (tmp_path / "lambdas" / "__pycache__" / "emu.cpython-312.pyc").write_bytes(b"\0")
    assert code_hash(tmp_path) == before
    (tmp_path / "lambdas" / "emu.py").write_text((tmp_path / "lambdas" / "emu.py").read_text() + "\n# changed\n")
    assert code_hash(tmp_path) != before


def cli_environment() -> dict[str, str]:
    """The CLI's environment: the venv first on PATH, and no AWS credentials or metadata lookups."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
        # Synthesis must not depend on an account: no shared credentials, no instance metadata.
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        CDK_DISABLE_CLI_TELEMETRY="true",
    )
    if "AWS_CA_BUNDLE" in os.environ:
        env["AWS_CA_BUNDLE"] = os.environ["AWS_CA_BUNDLE"]
    return env


@pytest.mark.skipif(not CDK_CLI.exists(), reason="CDK CLI not installed: run `make system-deps` (npm install)")
def test_real_cdk_cli_synthesizes_every_stack(tmp_path: Path) -> None:
    # When the pinned CDK CLI runs `cdk synth` from the repo root, as `make synth` does
    result = subprocess.run(
        [str(CDK_CLI), "synth", "--quiet", "--no-notices", "--output", str(tmp_path)],
        cwd=REPO_ROOT,
        env=cli_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    # Then it succeeds (cdk-nag included) and writes every dev stack
    assert result.returncode == 0, result.stderr[-4000:]
    written = {p.name.removesuffix(".template.json") for p in tmp_path.glob("*.template.json")}
    expected = {
        f"{DEV.stack_prefix}-{name}"
        for name in ("Network", "Data", "PineconeIndex", "Emu", "Pelican", "Reindex", "Edge", "Frontend", "Monitoring")
    }
    assert written == expected
