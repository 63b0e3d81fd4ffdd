"""The local Emu workers: each lane its own process(es), together exactly each lane's concurrency."""

from __future__ import annotations

import os

import pytest

from refarch.lanes.topology import DEFAULT_TOPOLOGY, Topology, bulk_lane, live_lane
from refarch_local.supervisor import LOCAL_CORES_ENV, emu_layout, local_cores


@pytest.mark.parametrize(
    ("topology", "cores", "expected"),
    [
        # this machine: the live lane on one thread, the bulk lane one process on both cores
        (DEFAULT_TOPOLOGY, 2, [("emu", "live", 4, 1), ("emu-bulk", "bulk", 4, 2)]),
        (DEFAULT_TOPOLOGY, 1, [("emu", "live", 4, 1), ("emu-bulk", "bulk", 4, 1)]),
        # more cores: more bulk processes, two cores each
        (
            DEFAULT_TOPOLOGY,
            8,
            [("emu", "live", 4, 1), ("emu-bulk", "bulk", 1, 2)]
            + [("emu-bulk-2", "bulk", 1, 2)]
            + [("emu-bulk-3", "bulk", 1, 2), ("emu-bulk-4", "bulk", 1, 2)],
        ),
        (
            Topology(live=live_lane(2), bulk=bulk_lane(3)),
            4,
            [("emu", "live", 2, 1), ("emu-bulk", "bulk", 2, 2), ("emu-bulk-2", "bulk", 1, 2)],
        ),
    ],
)
def test_each_lane_gets_its_own_workers_with_exactly_its_concurrency(
    topology: Topology, cores: int, expected: list
) -> None:
    # Given a topology and a machine's cores / When the local workers are laid out
    layout = emu_layout(topology, cores)
    # Then each lane has its own processes, and together they run as many invocations as Lambda would
    assert [(w.name, w.lane, w.concurrency, w.threads) for w in layout] == expected
    for lane in (topology.live, topology.bulk):
        assert sum(w.concurrency for w in layout if w.lane == lane.name) == lane.concurrency


def test_a_share_of_the_cores_gives_the_stack_fewer_model_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a stack told it may use one core (as each parallel test worker's stacks are)
    monkeypatch.setenv(LOCAL_CORES_ENV, "1")
    # When its workers are laid out, Then every model runs on one thread, with each lane's full concurrency
    assert local_cores() == 1
    assert [(w.name, w.threads, w.concurrency) for w in emu_layout()] == [("emu", 1, 4), ("emu-bulk", 1, 4)]
    # And without the variable the stack takes the machine's cores
    monkeypatch.delenv(LOCAL_CORES_ENV)
    assert local_cores() == (os.cpu_count() or 1)
