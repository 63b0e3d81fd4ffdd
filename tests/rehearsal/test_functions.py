"""Function workers: a handler's result and its exception reach the state machine as Lambda reports them."""

from __future__ import annotations

import json
from pathlib import Path

from refarch_local.rehearsal.functions import FunctionRuntime, FunctionWorker, lambda_environment


def test_a_worker_reports_a_handlers_exception_by_its_class_name(tmp_path: Path) -> None:
    # Given a warm worker of a function whose handler raises RangeBusyError when asked
    function = FunctionRuntime(
        name="Busy",
        handler="tests.rehearsal.busy_handler.handler",
        environment={},
        timeout_seconds=10,
        memory_mb=128,
        role=None,
    )
    with (tmp_path / "log").open("w") as log:
        worker = FunctionWorker(function, lambda_environment(function, "us-east-1"), workdir=tmp_path, log=log)
        try:
            # When it is invoked twice: once fine, once busy
            fine = worker.invoke({"n": 1})
            busy = worker.invoke({"busy": True})
        finally:
            worker.close()
    # Then the result comes back, and the error is reported as Lambda reports it: the exception's
    # class name is the error type a Retry's ErrorEquals matches
    assert fine.result == {"echo": {"n": 1}, "function": "Busy"}
    assert busy.error_type == "RangeBusyError" and "held by another worker" in busy.error_message
    response = busy.lambda_response()
    assert response["FunctionError"] == "Unhandled"
    assert json.loads(response["Payload"].read())["errorType"] == "RangeBusyError"
