"""The template loader and the intrinsic resolver, over the real dev assembly."""

from __future__ import annotations

import json

import pytest

from refarch.lanes.topology import BOOTSTRAP_BATCH_HANDLER, EMU_HANDLER
from refarch_local.rehearsal.template import (
    LOCAL_ACCOUNT,
    Assembly,
    LocalResource,
    Resolver,
    ResourceKey,
    TemplateError,
)


def test_lists_what_runs_and_who_may_do_what(assembly: Assembly) -> None:
    """Given the dev assembly, the loader finds both Emu lanes, both containers, the three state machines
    and each function's role with the statements granted to it."""
    live = assembly.function(EMU_HANDLER, REFARCH_EMU_LANE="live")
    bulk = assembly.function(EMU_HANDLER, REFARCH_EMU_LANE="bulk")
    assert live.key != bulk.key and live.role is not None
    assert {c.name for c in assembly.containers()} == {"web", "listener"}
    assert {m.key.logical_id[:9] for m in assembly.state_machines()} == {"Bootstrap", "Reconcile", "ReindexSt"}
    batch_role = assembly.role(assembly.function(BOOTSTRAP_BATCH_HANDLER).role)  # type: ignore[arg-type]
    actions = {
        a for s in batch_role.statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert "sqs:SendMessage" in actions


def test_resolves_imports_joins_and_pseudo_parameters(assembly: Assembly) -> None:
    """Given local queues and secrets, a function's environment resolves across stacks (Fn::ImportValue)."""
    bulk_queue = next(k for k, _ in assembly.resources("AWS::SQS::Queue") if k.logical_id.startswith("SyncBulkQueue"))
    resolver = Resolver(
        assembly,
        {bulk_queue: LocalResource(ref="http://127.0.0.1:1/000000000000/bulk")},
        fallback=lambda key, resource: LocalResource(
            ref=f"local:{key.logical_id}", attributes={"Name": key.logical_id, "Arn": f"arn:{key.logical_id}"}
        ),
    )
    batch = assembly.function(BOOTSTRAP_BATCH_HANDLER)
    env = {name: resolver.resolve_text(batch.key.stack, value) for name, value in batch.environment.items()}
    assert env["REFARCH_BULK_QUEUE_URL"] == "http://127.0.0.1:1/000000000000/bulk"
    assert env["REFARCH_DATABASE_SECRET_ARN"].startswith("local:DatabaseLoginPelican")
    reindex = assembly.state_machine("Reindex")
    fill = json.loads(resolver.resolve_text(reindex.key.stack, reindex.definition))["States"]["Fill"]
    assert fill["Parameters"]["StateMachineArn"].startswith(f"arn:aws:states:us-east-1:{LOCAL_ACCOUNT}:stateMachine:")


def test_an_unmapped_reference_names_the_resource(assembly: Assembly) -> None:
    """Without a fallback, a reference to a resource with no local counterpart is an error naming it."""
    batch = assembly.function(BOOTSTRAP_BATCH_HANDLER)
    with pytest.raises(TemplateError, match="SyncBulkQueue"):
        Resolver(assembly, {}).resolve(batch.key.stack, batch.environment["REFARCH_BULK_QUEUE_URL"])
    with pytest.raises(TemplateError, match="no resource"):
        assembly.resource(ResourceKey("Refarch-dev-Data", "Missing"))
