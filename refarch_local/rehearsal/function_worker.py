"""One Lambda function's container: `python -m refarch_local.rehearsal.function_worker <handler>`.

Started with exactly the function's template environment (plus the endpoint and credential
variables the rehearsal adds), it imports the handler as the Lambda runtime does at cold start,
then serves invocations one at a time: an event per line on stdin, an outcome per line on the
protocol pipe (the original stdout; the handler's own prints and logs go to stderr).

Every keyed read of `os.environ` made by the project's code (refarch/, lambdas/, web/,
refarch_cli/) is recorded and reported with each outcome, so the parent can tell a variable the
code reads but the template does not set. So is every `Settings` field the code reads while it
holds its default (neither the environment nor the code gave it a value), as the variable that
would have set it: Settings reads the environment once, whole, so a setting the template forgot
would otherwise pass unseen at its default (the wrong namespace, a local endpoint).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from types import FrameType
from typing import Any

PROJECT_PACKAGES = ("refarch", "lambdas", "web", "refarch_cli")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _read_by_project_code() -> bool:
    """Whether the frame reading the environment (below os and this module) is the project's code."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename != __file__ and not filename.endswith(("/os.py", "/_collections_abc.py")):
            path = Path(filename)
            try:
                relative = path.resolve().relative_to(PROJECT_ROOT)
            except ValueError:
                return False
            return relative.parts[0] in PROJECT_PACKAGES
        frame = frame.f_back
    return False


class RecordingEnviron(MutableMapping[str, str]):
    """os.environ, recording the names the project's code asks for (get, [], in)."""

    def __init__(self, environ: MutableMapping[str, str]) -> None:
        self._environ = environ
        self.read: set[str] = set()

    def _note(self, key: object) -> None:
        if isinstance(key, str) and _read_by_project_code():
            self.read.add(key)

    def __getitem__(self, key: str) -> str:
        self._note(key)
        return self._environ[key]

    def get(self, key: str, default: Any = None) -> Any:
        self._note(key)
        return self._environ.get(key, default)

    def __contains__(self, key: object) -> bool:
        self._note(key)
        return key in self._environ

    def __setitem__(self, key: str, value: str) -> None:
        self._environ[key] = value

    def __delitem__(self, key: str) -> None:
        del self._environ[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)

    def copy(self) -> dict[str, str]:
        """A plain dict copy, as os.environ.copy() returns."""
        return dict(self._environ)


def record_default_setting_reads(read: set[str]) -> None:
    """Add to `read` the variable of every Settings field read while it holds its default (any instance)."""
    from refarch.settings import Settings
    from refarch_local.rehearsal.wiring import settings_variable

    fields = frozenset(Settings.model_fields)
    original = Settings.__getattribute__

    def recording(self: Settings, name: str) -> Any:
        if name in fields and name not in original(self, "model_fields_set") and _read_by_project_code():
            read.add(settings_variable(name))
        return original(self, name)

    Settings.__getattribute__ = recording  # type: ignore[method-assign,assignment]


def main() -> None:
    """Cold start (import the handler), then serve invocations until stdin closes."""
    handler_name = sys.argv[1]
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the handler's prints and Powertools' logs go to stderr, never into the protocol
    sys.stdout = sys.stderr
    environ = RecordingEnviron(os.environ)
    os.environ = environ  # type: ignore[assignment]  # noqa: B003 (recording reads, not clearing: the values stay)
    record_default_setting_reads(environ.read)

    def reply(message: dict[str, Any]) -> None:
        protocol.write(json.dumps({**message, "env_reads": sorted(environ.read)}, default=str) + "\n")

    from refarch_local.handlers import LocalLambdaContext, load_handler

    try:
        handler = load_handler(handler_name)
    except Exception as err:  # reported to the parent, which fails the invocation with it (Runtime.ImportModuleError)
        reply(_error(err, "Runtime.ImportModuleError"))
        return
    reply({"ready": True})
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", handler_name)
    for line in sys.stdin:
        request = json.loads(line)
        context = LocalLambdaContext(function_name=function_name, timeout_seconds=int(request["timeout_seconds"]))
        try:
            reply({"result": handler(request["event"], context)})
        except Exception as err:  # a handler's exception is the invocation's error, as Lambda reports it
            reply(_error(err))


def _error(err: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "error_type": error_type or type(err).__name__,
        "error_message": str(err),
        "stack_trace": traceback.format_exception(err),
    }


if __name__ == "__main__":
    main()
