"""Two lanes into one index, as synthesized: each its own queue, DLQ, alarms, Emu function and event source."""

from __future__ import annotations

import json

import pytest

from refarch.lanes import topology
from refarch.settings import DLQ_URL_VARIABLES, QUEUE_URL_VARIABLES
from tests.infra.conftest import Synthesized
from tests.infra.templates import container, environment, event_source_of, function_logical_id, resources

# Each lane's stateful and watched resources, by logical id as deployed: a changed id would make
# CloudFormation replace the queue (and lose its messages), the function or the alarm.
DEPLOYED_LOGICAL_IDS = {
    "live": {
        "queues": {"SyncQueue14CFE323", "SyncDeadLetterQueue9F47D1DF"},
        "functions": {"EmuFunction19FA690C"},
        "alarms": {"DeadLetterQueueNotEmpty7CE402F1", "QueueAgeHigh2CAD0EC8", "EmuErrorsC022B9BB"},
    },
    "bulk": {
        "queues": {"SyncBulkQueue0BDDAD5E", "SyncBulkDeadLetterQueue5EDF3272"},
        "functions": {"EmuBulkFunctionCE7C51E4"},
        "alarms": {"BulkDeadLetterQueueNotEmpty83E6FEFD", "BulkQueueAgeHigh85896CA6", "EmuBulkErrorsAC8B1FB6"},
    },
}


def queue(template: dict, prefix: str) -> tuple[str, dict]:
    """(logical id, properties) of the one queue whose logical id starts with `prefix`."""
    [(logical_id, resource)] = [
        (k, r) for k, r in resources(template, "AWS::SQS::Queue").items() if k.startswith(prefix)
    ]
    return logical_id, resource["Properties"]


def test_bulk_queue_is_standard_encrypted_and_redrives_to_its_own_dlq(dev: Synthesized) -> None:
    # Given the bulk lane's queue and DLQ
    data = dev.template_json(dev.stacks.data)
    _, bulk = queue(data, "SyncBulkQueue")
    dlq_id, dlq = queue(data, "SyncBulkDeadLetterQueue")
    # Then both are standard (not FIFO) queues, encrypted, with retention; the queue redrives to its DLQ
    assert "FifoQueue" not in bulk and "FifoQueue" not in dlq
    assert bulk["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True
    assert bulk["MessageRetentionPeriod"] == 4 * 86400 and dlq["MessageRetentionPeriod"] == 14 * 86400
    assert bulk["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": dev.config.topology.max_receive_count,
    }
    assert bulk["QueueName"].endswith(topology.BULK_QUEUE_NAME) and dlq["QueueName"].endswith(topology.BULK_DLQ_NAME)
    # And, like every queue, refuses plain HTTP
    policies = json.dumps(resources(data, "AWS::SQS::QueuePolicy"))
    assert "SyncBulkQueue" in policies and "SyncBulkDeadLetterQueue" in policies


def test_bulk_event_source_takes_large_batches_with_a_window_within_its_reserved_concurrency(
    any_stage: Synthesized,
) -> None:
    # Given the bulk lane's Emu function and its event source mapping
    emu = any_stage.template_json(any_stage.stacks.emu)
    function_id = function_logical_id(emu, topology.EMU_HANDLER, lane="bulk")
    function = resources(emu, "AWS::Lambda::Function")[function_id]["Properties"]
    mapping = event_source_of(emu, function_id)
    bulk = any_stage.config.topology.bulk
    # Then it consumes the bulk queue in batches of >= 100 messages with a batching window,
    # reports partial failures, and its maximum concurrency fits in its own reserved concurrency
    assert "SyncBulkQueue" in json.dumps(mapping["EventSourceArn"])
    assert mapping["BatchSize"] == bulk.batch_size >= 100
    assert mapping["MaximumBatchingWindowInSeconds"] == bulk.batching_window_seconds > 0
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"]["MaximumConcurrency"] <= function["ReservedConcurrentExecutions"]
    assert function["ReservedConcurrentExecutions"] == bulk.reserved_concurrency
    # And the handler is the same as the live lane's: the lane is configuration
    assert environment(function)["REFARCH_EMU_LANE"] == "bulk"


@pytest.mark.parametrize("lane", ["live", "bulk"])
def test_each_lane_has_its_own_function_and_event_source(dev: Synthesized, lane: str) -> None:
    # Given the Emu stack
    emu = dev.template_json(dev.stacks.emu)
    function_id = function_logical_id(emu, topology.EMU_HANDLER, lane=lane)
    # Then exactly one mapping invokes this lane's function, from this lane's queue
    mapping = event_source_of(emu, function_id)
    own = "SyncQueue" if lane == "live" else "SyncBulkQueue"
    assert own in json.dumps(mapping["EventSourceArn"])
    assert len(resources(emu, "AWS::Lambda::EventSourceMapping")) == 2


def test_both_lanes_have_dlq_and_age_alarms_and_are_on_the_dashboard(dev: Synthesized) -> None:
    # Given the monitoring stack
    monitoring = dev.template_json(dev.stacks.monitoring)
    alarms = resources(monitoring, "AWS::CloudWatch::Alarm")
    by_metric = {
        (a["Properties"].get("MetricName"), json.dumps(a["Properties"].get("Dimensions", []))): a["Properties"]
        for a in alarms.values()
    }
    # Then each lane's DLQ depth and oldest-message age raise an alarm
    for marker in ("SyncQueue", "SyncDeadLetterQueue", "SyncBulkQueue", "SyncBulkDeadLetterQueue"):
        assert any(marker in dims for _, dims in by_metric), f"no alarm on {marker}"
    bulk_age = next(
        p
        for (name, dims), p in by_metric.items()
        if name == "ApproximateAgeOfOldestMessage" and "SyncBulkQueue" in dims
    )
    assert bulk_age["Threshold"] == dev.config.bulk_queue_age_alarm_seconds
    bulk_dlq = next(
        p
        for (name, dims), p in by_metric.items()
        if name == "ApproximateNumberOfMessagesVisible" and "SyncBulkDeadLetterQueue" in dims
    )
    assert bulk_dlq["Threshold"] == 0 and bulk_dlq["AlarmActions"]
    # And the dashboard shows both lanes (queues and functions)
    [dashboard] = resources(monitoring, "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for title in ("Live queue depth", "Bulk queue depth", "Live Emu concurrency", "Bulk Emu concurrency"):
        assert title in body
    assert '\\"lane\\",\\"live\\"' in body and '\\"lane\\",\\"bulk\\"' in body
    # And each lane's graph of what Emu got done shows the embedding provider's throttles (Emu's EmbedThrottles)
    assert body.count("EmbedThrottles") == 2 and "Bulk products embedded, embedding requests and throttles" in body


@pytest.mark.parametrize("lane", topology.LANE_NAMES)
def test_each_lane_keeps_its_deployed_logical_ids_and_queue_names(dev: Synthesized, lane: topology.LaneName) -> None:
    # Given the stacks that hold a lane's queues, its Emu function and its alarms
    data = dev.template_json(dev.stacks.data)
    emu = dev.template_json(dev.stacks.emu)
    monitoring = dev.template_json(dev.stacks.monitoring)
    expected = DEPLOYED_LOGICAL_IDS[lane]
    # Then each keeps the logical id it was deployed with, so a deploy updates it in place
    assert expected["queues"] <= set(resources(data, "AWS::SQS::Queue"))
    assert function_logical_id(emu, topology.EMU_HANDLER, lane=lane) in expected["functions"]
    assert expected["alarms"] <= set(resources(monitoring, "AWS::CloudWatch::Alarm"))
    # And the queues keep their physical names (a new name is a new queue too)
    spec = dev.config.topology.lane(lane)
    names = {
        r["Properties"]["QueueName"] for k, r in resources(data, "AWS::SQS::Queue").items() if k in expected["queues"]
    }
    assert names == {f"{dev.config.name}-{spec.queue_name}", f"{dev.config.name}-{spec.dlq_name}"}


def test_the_web_finds_each_lanes_queues_under_the_names_settings_read(dev: Synthesized) -> None:
    # Given the web container's environment
    env = environment(container(dev.template_json(dev.stacks.frontend), "web"))
    # Then every lane's queue and DLQ URL is under the variable refarch.settings reads for that lane
    for lane in topology.LANE_NAMES:
        prefix = "SyncBulk" if lane == "bulk" else "Sync"
        assert f"{prefix}Queue" in json.dumps(env[QUEUE_URL_VARIABLES[lane]])
        assert f"{prefix}DeadLetterQueue" in json.dumps(env[DLQ_URL_VARIABLES[lane]])


@pytest.mark.parametrize("lane", topology.LANE_NAMES)
def test_each_dead_letter_alarm_says_how_to_act_on_the_dead_letters(dev: Synthesized, lane: str) -> None:
    # Given the lane's dead-letter alarm, as deployed
    monitoring = dev.template_json(dev.stacks.monitoring)
    [alarm_id] = [a for a in DEPLOYED_LOGICAL_IDS[lane]["alarms"] if "DeadLetterQueueNotEmpty" in a]
    description = resources(monitoring, "AWS::CloudWatch::Alarm")[alarm_id]["Properties"]["AlarmDescription"]
    # Then it names the commands for that lane and the page, within CloudWatch's 1024 characters
    for command in (f"refarch dlq list --lane {lane}", f"refarch dlq redrive --lane {lane}", "refarch dlq discard"):
        assert command in description
    assert "signed in on the page" in description and len(description) <= 1024
