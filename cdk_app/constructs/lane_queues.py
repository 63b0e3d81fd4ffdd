"""One deployed lane's queues: the value stacks pass around (and loop over) instead of queue arguments per lane."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import aws_sqs as sqs

from refarch.lanes import topology


@dataclass(frozen=True, kw_only=True)
class LaneQueues:
    """A lane (refarch.lanes.topology) with the queue its Emu function consumes and the DLQ that queue redrives to."""

    lane: topology.Lane
    queue: sqs.IQueue
    dead_letter_queue: sqs.IQueue

    @property
    def name(self) -> topology.LaneName:
        """The lane's name: `live` or `bulk`."""
        return self.lane.name


Lanes = Mapping[topology.LaneName, LaneQueues]
"""Every lane's queues by lane name, in topology order (live, then bulk)."""


def lane_id_prefix(lane: topology.LaneName) -> str:
    """What a lane's construct ids start with (after `Emu` for its function): nothing for live, `Bulk` for bulk.

    The live lane's constructs predate the bulk lane and keep their unprefixed ids: a changed id is
    a new logical id, and CloudFormation would replace the queue, function or alarm on deploy.
    """
    return "" if lane == "live" else lane.capitalize()
