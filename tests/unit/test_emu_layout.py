"""The local Emu workers split Emu's concurrency (as the CDK stack configures it) and the machine's cores."""

from __future__ import annotations

import pytest

from refarch.topology import DEFAULT_TOPOLOGY, Topology
from refarch_local.demo import emu_layout


@pytest.mark.parametrize(
    ("topology", "cores", "expected"),
    [
        (DEFAULT_TOPOLOGY, 2, [(4, 1), (4, 1)]),  # this machine: two workers, one core each
        (DEFAULT_TOPOLOGY, 1, [(8, 1)]),  # one core: one worker with all of Emu's concurrency
        (DEFAULT_TOPOLOGY, 8, [(4, 4), (4, 4)]),  # more cores: more model threads per worker
        (Topology(emu_reserved_concurrency=3, emu_max_concurrency=3), 4, [(2, 2), (1, 2)]),
        (Topology(emu_reserved_concurrency=32, emu_max_concurrency=16), 2, [(8, 1), (8, 1)]),
    ],
)
def test_workers_share_exactly_emus_concurrency(topology: Topology, cores: int, expected: list) -> None:
    layout = emu_layout(topology, cores)
    assert layout == expected
    # However it is split, the local event source runs as many batches at once as Lambda would.
    assert sum(c for c, _ in layout) == min(topology.emu_reserved_concurrency, topology.emu_max_concurrency)
