"""Wiring: which environment variables each runtime's template sets, and which of them some code reads.

A variable the template sets that nothing reads is a typo or a leftover (the setting it meant is
silently left at its default: Settings ignores names it does not know). The other direction,
a variable the code reads that the template does not set, is caught where the code runs: the
rehearsal's function workers record every read by the project's code (`function_worker`), and
a runtime started from its template environment alone fails on a setting it lacks.
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


def settings_variables() -> frozenset[str]:
    """Every environment variable `refarch.settings.Settings` reads (names are case-insensitive: upper-cased)."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, str):
            names.add(alias)
        elif isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        else:
            names.add(prefix + field_name)
    return frozenset(name.upper() for name in names)


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
