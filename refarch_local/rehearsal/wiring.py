"""Wiring: which environment variables each runtime's template sets, and which of them some code reads.

A variable the template sets that nothing reads is a typo or a leftover (the setting it meant is
silently left at its default: Settings ignores names it does not know). The other direction,
a variable the code reads that the template does not set, is caught where the code runs: the
rehearsal's function workers record every read by the project's code (`function_worker`: of
os.environ, and of Settings fields at their defaults), `undeclared` keeps those the template
should have set, and a runtime started from its template environment alone fails on a setting it lacks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import AliasChoices

from refarch.settings import Settings
from refarch_local.rehearsal.template import Assembly

# Read by a library rather than by Settings (Powertools' logger, metrics and tracer).
LIBRARY_VARIABLES = frozenset({"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"})

# Settings a runtime on AWS reads at their defaults on purpose, and why. Any other field read while it
# holds its default is a setting its template forgot (the rehearsal fails naming its variable).
DEFAULT_ON_AWS: dict[str, str] = {
    "sqs_endpoint_url": "a local SQS server's address; on AWS the SDK's own endpoint",
    "openai_base_url": "a local stand-in's address; on AWS the OpenAI API",
    "bedrock_endpoint_url": "a local stand-in's address; on AWS the Bedrock runtime's endpoint",
    "openai_timeout_seconds": "the background runtimes' provider budget: the default is what AWS runs",
    "openai_max_retries": "the background runtimes' provider budget: the default is what AWS runs",
    "pinecone_timeout_seconds": "the background runtimes' provider budget: the default is what AWS runs",
    "pinecone_max_retries": "the background runtimes' provider budget: the default is what AWS runs",
    "bedrock_timeout_seconds": "the background runtimes' provider budget: the default is what AWS runs",
    "bedrock_max_attempts": "the background runtimes' provider budget: the default is what AWS runs",
}
# Settings whose value is a secret: locally the value itself, on AWS read by the ARN in the other field.
# Reading the local form at its default is fine where the template sets the ARN.
SECRET_BY_ARN: dict[str, str] = {
    "database_url": "database_secret_arn",
    "openai_api_key": "openai_secret_arn",
    "pinecone_api_key": "pinecone_secret_arn",
    "edit_password": "edit_password_secret_arn",
    "session_secret": "session_secret_arn",
}


def field_variables(field_name: str) -> list[str]:
    """The environment variables that set one `Settings` field, the first its own (upper-cased)."""
    alias = Settings.model_fields[field_name].validation_alias
    if isinstance(alias, str):
        return [alias.upper()]
    if isinstance(alias, AliasChoices):
        return [str(choice).upper() for choice in alias.choices]
    return [f"{Settings.model_config.get('env_prefix', '')}{field_name}".upper()]


def settings_variable(field_name: str) -> str:
    """The environment variable a template sets for one `Settings` field (REFARCH_<FIELD>)."""
    return field_variables(field_name)[0]


def settings_variables() -> frozenset[str]:
    """Every environment variable `refarch.settings.Settings` reads (names are case-insensitive: upper-cased)."""
    return frozenset(name for field_name in Settings.model_fields for name in field_variables(field_name))


def undeclared(read: Iterable[str], declared: Iterable[str]) -> set[str]:
    """The variables in `read` that the template (`declared`) should have set: those it does not set,
    less the settings read at their defaults on purpose and the local forms of secrets it gives by ARN."""
    declared_names = {name.upper() for name in declared}
    allowed = {settings_variable(name) for name in DEFAULT_ON_AWS} | {
        settings_variable(name) for name, arn in SECRET_BY_ARN.items() if settings_variable(arn) in declared_names
    }
    return {name for name in read if name.upper() not in declared_names and name.upper() not in allowed}


@dataclass(frozen=True)
class RuntimeEnvironment:
    """One runtime's variables as its template sets them: a Lambda function or an ECS container."""

    runtime: str  # "function <stack>/<logical id> (<handler>)" or "container <name>"
    variables: Mapping[str, Any]


def runtime_environments(assembly: Assembly) -> list[RuntimeEnvironment]:
    """The environment of every project function (handlers in lambdas/) and every container."""
    found = [
        RuntimeEnvironment(runtime=f"function {f.key} ({f.handler})", variables=f.environment)
        for f in assembly.functions()
        if f.handler.startswith("lambdas.")
    ]
    for container in assembly.containers():
        found.append(
            RuntimeEnvironment(
                runtime=f"container {container.name}", variables={**container.environment, **container.secrets}
            )
        )
    return found


def unread_variables(environments: Iterable[RuntimeEnvironment]) -> dict[str, list[str]]:
    """Runtime -> the variables its template sets that neither Settings nor a library reads."""
    known = settings_variables() | LIBRARY_VARIABLES
    found = {}
    for environment in environments:
        unread = sorted(name for name in environment.variables if name.upper() not in known)
        if unread:
            found[environment.runtime] = unread
    return found
