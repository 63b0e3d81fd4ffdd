"""The state machines run locally: bootstrap (Plan -> Map(Batch) -> Finalize), reconcile
(Plan -> Map(Shard) -> Finalize) and re-index (Start -> Fill -> poll -> Switch).

The same Lambda handlers the Step Functions definition invokes, loaded by handler string; the
Map is a thread pool of the same max concurrency, and a Batch whose range another worker holds
is retried with the same backoff as the state machine's Retry. A failed Batch goes to the same
catch path (Finalize with an error), as in AWS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from refarch.generations import IncompleteGenerationError
from refarch.lanes.topology import (
    BOOTSTRAP_BATCH_HANDLER,
    BOOTSTRAP_FINALIZE_HANDLER,
    BOOTSTRAP_PLAN_HANDLER,
    DEFAULT_TOPOLOGY,
    RECONCILE_FINALIZE_HANDLER,
    RECONCILE_PLAN_HANDLER,
    RECONCILE_SHARD_HANDLER,
    REINDEX_HANDLER,
    Topology,
)
from refarch.pelican.bootstrap import RangeBusyError
from refarch_local.handlers import invoke


def run_bootstrap(
    *,
    topology: Topology = DEFAULT_TOPOLOGY,
    range_size: int | None = None,
    on_batch: Callable[[dict[str, Any]], None] | None = None,
    fresh: bool = False,
    generation: int | None = None,
) -> dict[str, Any]:
    """Run one bootstrap execution to the end; return Finalize's output.

    It fills index generation `generation` (default: the active one).
    """
    plan = invoke(
        BOOTSTRAP_PLAN_HANDLER,
        {"range_size": range_size or topology.bootstrap_range_size, "fresh": fresh, "generation": generation},
    )
    run_id = plan["run_id"]
    try:
        with ThreadPoolExecutor(max_workers=topology.bootstrap_max_concurrency, thread_name_prefix="bootstrap") as pool:
            for result in pool.map(lambda item: invoke_batch(item, topology), plan["ranges"]):
                if on_batch:
                    on_batch(result)
    except BaseException as err:  # Ctrl-C included: the run is recorded as failed, never left half-done
        invoke(BOOTSTRAP_FINALIZE_HANDLER, {"run_id": run_id, "error": f"{type(err).__name__}: {err}"})
        raise
    return invoke(BOOTSTRAP_FINALIZE_HANDLER, {"run_id": run_id})


def invoke_batch(item: dict[str, Any], topology: Topology = DEFAULT_TOPOLOGY) -> dict[str, Any]:
    """One Map item: the Batch handler, retried while its range is busy (the state machine's policy)."""
    attempt = 0
    while True:
        try:
            return invoke(BOOTSTRAP_BATCH_HANDLER, item)
        except RangeBusyError:
            if attempt == topology.bootstrap_busy_retry_attempts:
                raise
            time.sleep(topology.bootstrap_busy_retry_seconds * 2**attempt)
            attempt += 1


def run_reconcile(*, repair: bool, topology: Topology = DEFAULT_TOPOLOGY) -> dict[str, Any]:
    """Run one reconcile execution: every shard compared (and repaired), then the summed report."""
    plan = invoke(RECONCILE_PLAN_HANDLER, {"repair": repair})
    with ThreadPoolExecutor(max_workers=topology.reconcile_max_concurrency, thread_name_prefix="reconcile") as pool:
        results = list(
            pool.map(lambda item: invoke(RECONCILE_SHARD_HANDLER, item, timeout_seconds=900), plan["shards"])
        )
    return invoke(RECONCILE_FINALIZE_HANDLER, {"results": results})


def run_reindex(
    *, poll_seconds: float = 60.0, timeout_seconds: float | None = None, topology: Topology = DEFAULT_TOPOLOGY
) -> dict[str, Any]:
    """Run one Reindex execution to the end, state by state as cdk_app's ReindexStateMachine; return its last output.

    Start (not needed: done) -> Fill (a bootstrap run of the building generation) -> loop: wait,
    Progress; complete: Switch (refused when a change arrived meanwhile: wait again); rows missing
    with both lanes idle: Fill again.
    """
    started = invoke(REINDEX_HANDLER, {"action": "start"})
    if not started["needed"]:
        return started
    generation = started["generation"]
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    run_bootstrap(topology=topology, generation=generation)
    while deadline is None or time.monotonic() < deadline:
        time.sleep(poll_seconds)
        progress = invoke(REINDEX_HANDLER, {"action": "progress", "generation": generation})
        if progress["complete"]:
            try:
                return invoke(REINDEX_HANDLER, {"action": "switch", "generation": generation})
            except IncompleteGenerationError:
                continue
        elif progress["lanes_idle"]:
            run_bootstrap(topology=topology, generation=generation)
    raise TimeoutError(f"the re-index of generation {generation} timed out (it goes on building)")
