"""Wiring: every runtime starts from its template environment alone and reads nothing the template does not set."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest

import refarch_local
from refarch.generations.placement import Placement
from refarch.lanes.topology import BOOTSTRAP_BATCH_HANDLER
from refarch.settings import Settings
from refarch_cli.runtime_context import settings_with_queue
from refarch_local.rehearsal.cloud import placeholder
from refarch_local.rehearsal.function_worker import RecordingEnviron, record_default_setting_reads
from refarch_local.rehearsal.functions import RUNTIME_PROVIDED, FunctionWorker, lambda_environment
from refarch_local.rehearsal.run import Rehearsal, RehearsalFailed, RehearsalOptions, function_runtimes
from refarch_local.rehearsal.states import local_functions_and_state_machines
from refarch_local.rehearsal.template import LOCAL_ACCOUNT, REPO_ROOT, Assembly, Resolver
from refarch_local.rehearsal.wiring import RuntimeEnvironment, runtime_environments, undeclared, unread_variables


def placeholder_resolver(assembly: Assembly) -> Resolver:
    """Every reference resolved to a well-formed local name (nothing is called at cold start)."""
    names = local_functions_and_state_machines(assembly, "us-east-1", LOCAL_ACCOUNT)
    return Resolver(assembly, names, account=LOCAL_ACCOUNT, fallback=placeholder)


def test_every_variable_a_template_sets_is_read_by_its_runtime(assembly: Assembly) -> None:
    # Given every project function's and container's template environment, Then each name is one Settings
    # (or Powertools) reads: a misspelt name would leave its setting silently at the default
    assert unread_variables(runtime_environments(assembly)) == {}
    # And a misspelt one is named, with its runtime
    typo = RuntimeEnvironment(runtime="function X", variables={"REFARCH_BULK_QUEUE_URI": "https://sqs/..."})
    assert unread_variables([typo]) == {"function X": ["REFARCH_BULK_QUEUE_URI"]}


def test_every_function_cold_starts_from_its_template_environment_alone(assembly: Assembly, tmp_path: Path) -> None:
    # Given each project function's template environment (resolved) and nothing else Lambda does not set
    resolver = placeholder_resolver(assembly)
    with (tmp_path / "functions.log").open("w") as log:
        for function in function_runtimes(assembly, resolver):
            environment = lambda_environment(function, "us-east-1")
            assert set(environment) - set(function.environment) <= RUNTIME_PROVIDED
            # When its handler is imported as Lambda's cold start does, in a process with only that environment
            worker = FunctionWorker(function, environment, workdir=tmp_path / function.name, log=log)
            worker.close()
            # Then it starts
            assert worker.cold_start_error is None, (function.name, worker.cold_start_error)


def test_every_container_loads_its_settings_from_its_template_environment_alone(assembly: Assembly) -> None:
    # Given each container's template environment (resolved), When Settings load in a process with only it
    resolver = placeholder_resolver(assembly)
    for container in assembly.containers():
        environment = {k: resolver.resolve_text(container.key.stack, v) for k, v in container.environment.items()}
        code = (
            "from refarch.settings import Settings\nimport web.app, web.health_lane, refarch_cli.commands\nSettings()"
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            env={**environment, "PYTHONPATH": str(REPO_ROOT), "PATH": os.environ["PATH"]},
            cwd="/",
            capture_output=True,
            text=True,
            check=False,
        )
        # Then they load
        assert done.returncode == 0, (container.name, done.stderr[-2000:])


def test_a_read_by_project_code_is_recorded_and_one_by_a_test_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the environment recorder a function worker installs, over an environment naming a queue
    recorder = RecordingEnviron({**os.environ, "REFARCH_QUEUE_URL": "http://127.0.0.1:1/123456789012/q"})
    monkeypatch.setattr(os, "environ", recorder)
    # When project code asks for a variable (the CLI checks whether a local supervisor runs it) and this test another
    settings_with_queue(wait_seconds=0.0)
    os.environ.get("SOME_TEST_VARIABLE")
    # Then only the project's read is recorded (a worker reports it unless its template sets it); the
    # variables Settings reads are checked against the templates by name instead (the test above)
    assert recorder.read == {refarch_local.SUPERVISOR_PID_ENV}


def test_a_variable_removed_from_a_template_fails_the_rehearsal_naming_it(assembly: Assembly, tmp_path: Path) -> None:
    # Given the templates with REFARCH_BULK_QUEUE_URL removed from the bootstrap Batch function's environment
    broken = Assembly(outdir=assembly.outdir, templates=copy.deepcopy(assembly.templates))
    batch = broken.function(BOOTSTRAP_BATCH_HANDLER)
    variables = broken.resource(batch.key)["Properties"]["Environment"]["Variables"]
    del variables["REFARCH_BULK_QUEUE_URL"]
    # When the rehearsal migrates and bootstraps
    options = RehearsalOptions(
        home=tmp_path, rows=20, time_scale=0.01, timeout_seconds=240, steps=("migrate", "bootstrap")
    )
    with pytest.raises(RehearsalFailed) as failed:
        Rehearsal(broken, options).run()
    # Then the bootstrap fails, naming the variable the Batch function needed
    assert "bootstrap" in str(failed.value) and "REFARCH_BULK_QUEUE_URL" in str(failed.value)


def test_a_setting_read_at_its_default_is_recorded_as_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the recorder a function worker installs on Settings (restored after this test)
    monkeypatch.setattr(Settings, "__getattribute__", Settings.__getattribute__)
    read: set[str] = set()
    record_default_setting_reads(read)
    # And settings from an environment naming the Pinecone index but not its namespace
    monkeypatch.delenv("REFARCH_PINECONE_NAMESPACE", raising=False)
    monkeypatch.setenv("REFARCH_PINECONE_INDEX_NAME", "refarch-dev-products")
    monkeypatch.setenv("REFARCH_VECTOR_BACKEND", "pinecone")
    settings = Settings()
    # When project code reads both (where Emu and search place vectors), and this test reads another default
    Placement.from_settings(settings)
    assert settings.local_model_threads is None or settings.local_model_threads >= 1
    # Then the namespace, silently at its default, is recorded by the variable that should have set it;
    # the index name the environment gave and this test's own read are not
    assert "REFARCH_PINECONE_NAMESPACE" in read
    assert "REFARCH_PINECONE_INDEX_NAME" not in read and "REFARCH_LOCAL_MODEL_THREADS" not in read


def test_only_deliberate_defaults_and_secrets_given_by_arn_pass_unset() -> None:
    read = {"REFARCH_PINECONE_NAMESPACE", "REFARCH_OPENAI_TIMEOUT_SECONDS", "OPENAI_API_KEY", "DATABASE_URL"}
    # A namespace left at its default is the template's omission; a provider budget's default is what AWS runs;
    # a secret's local form is fine where the template gives the secret by ARN, and not where it does not
    assert undeclared(read, {"REFARCH_DATABASE_SECRET_ARN"}) == {"REFARCH_PINECONE_NAMESPACE", "OPENAI_API_KEY"}
    assert undeclared(read, {"REFARCH_DATABASE_SECRET_ARN", "REFARCH_OPENAI_SECRET_ARN"}) == {
        "REFARCH_PINECONE_NAMESPACE"
    }
    assert undeclared(read, {"REFARCH_PINECONE_NAMESPACE", "DATABASE_URL", "OPENAI_API_KEY"}) == set()
