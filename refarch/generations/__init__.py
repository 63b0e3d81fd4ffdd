"""Index generations: which embedder and vector index search reads, and which one is being filled.

A generation is one embedder (model id + dimension) and one vector index target (a pgvector
table, or a Pinecone index and namespace), recorded in `index_generations` (migration 0010).
Exactly one is `active` (search reads it); at most one is `building` (a re-index fills it
through the bulk lane); a generation replaced by a switch is `retired` and still kept in sync,
so a rollback is instant, until `gc` drops it after the grace period. A build given up is
`abandoned`: no longer written, never restored, dropped by the next `gc`. Emu applies every change
to every live generation (building, active, retired), each with its own ledger rows.

This module holds the records, their queries and the status transitions;
`refarch.generations.placement` decides where a new generation's vectors go, and
`refarch.generations.targets` turns a generation into an embedder and an index. docs/reindex.md
describes the procedure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from refarch.db import Connection, fetch_one
from refarch.index.vector_target import VectorTarget, target_as_json, target_from_json
from refarch.settings import Settings

GenerationStatus = Literal["building", "active", "retired", "abandoned", "dropped"]
LIVE_STATUSES: tuple[GenerationStatus, ...] = ("building", "active", "retired")
# How far back the building generation's rate is measured (rows indexed per second).
RATE_WINDOW_SECONDS = 30


class GenerationError(RuntimeError):
    """A generation cannot change as asked; the message says why and what to do instead."""


class IncompleteGenerationError(GenerationError):
    """The generation does not yet hold every row at its current version (the switch waits)."""


@dataclass(frozen=True)
class EmbedderSpec:
    """Which embedder a generation uses: the settings that choose it (keys stay in the settings)."""

    kind: Literal["local", "openai", "bedrock"]
    model: str
    dimensions: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbedderSpec:
        """The embedder these settings configure."""
        if settings.embedder_kind == "openai":
            return cls("openai", settings.openai_model, settings.openai_dimensions)
        if settings.embedder_kind == "bedrock":
            return cls("bedrock", settings.bedrock_model, settings.bedrock_dimensions)
        return cls("local", settings.local_model, None)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> EmbedderSpec:
        """From the `embedder` column."""
        return cls(value["kind"], value["model"], value.get("dimensions"))

    def as_json(self) -> dict[str, Any]:
        """For the `embedder` column."""
        return {"kind": self.kind, "model": self.model, "dimensions": self.dimensions}

    def settings_for(self, settings: Settings) -> Settings:
        """These settings with this embedder chosen (credentials and base URLs kept)."""
        if self.kind == "openai":
            update: dict[str, Any] = {
                "embedder": "openai",
                "openai_model": self.model,
                "openai_dimensions": self.dimensions,
            }
        elif self.kind == "bedrock":
            update = {"embedder": "bedrock", "bedrock_model": self.model, "bedrock_dimensions": self.dimensions}
        else:
            update = {"embedder": "local", "local_model": self.model}
        return settings.model_copy(update=update)


@dataclass(frozen=True)
class Generation:
    """One row of `index_generations`."""

    id: int
    status: GenerationStatus
    embedder: EmbedderSpec | None
    model_id: str | None
    dimension: int | None
    backend: Literal["pgvector", "pinecone"] | None
    target: VectorTarget | None  # None only before generation 1 is recorded
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None
    # The source text fingerprint its vectors were made from (None: made before sources, or unknown).
    source_text: str | None = None

    @property
    def recorded(self) -> bool:
        """False only for generation 1 before a runtime recorded the embedder it was built with."""
        return self.embedder is not None

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary (status displays, the CLI)."""
        return {
            "id": self.id,
            "status": self.status,
            "model_id": self.model_id,
            "dimension": self.dimension,
            "backend": self.backend,
            "target": target_as_json(self.target) if self.target else None,
            "activated_at": self.activated_at.isoformat() if self.activated_at else None,
            "retired_at": self.retired_at.isoformat() if self.retired_at else None,
        }


_COLUMNS = (
    "id, status, embedder, model_id, dimension, backend, target, created_at, activated_at, retired_at, source_text"
)


def _row(row: tuple[Any, ...]) -> Generation:
    gid, status, embedder, model_id, dimension, backend, target, created, activated, retired, source_text = row
    return Generation(
        id=gid,
        status=status,
        embedder=EmbedderSpec.from_json(embedder) if embedder else None,
        model_id=model_id,
        dimension=dimension,
        backend=backend,
        target=target_from_json(target),
        created_at=created,
        activated_at=activated,
        retired_at=retired,
        source_text=source_text,
    )


def list_generations(conn: Connection, *, include_dropped: bool = False) -> list[Generation]:
    """Every generation, oldest first."""
    where = "" if include_dropped else " WHERE status <> 'dropped'"
    with conn.cursor() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM index_generations{where} ORDER BY id")
        return [_row(r) for r in cur.fetchall()]


def get(conn: Connection, generation_id: int) -> Generation | None:
    """One generation by id."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM index_generations WHERE id = %s", (generation_id,))
        row = cur.fetchone()
    return _row(row) if row else None


def active(conn: Connection) -> Generation:
    """The generation search reads."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM index_generations WHERE status = 'active'")
        row = cur.fetchone()
    if row is None:
        raise GenerationError("no active index generation: run `refarch db migrate` (migration 0010 creates one)")
    return _row(row)


def building(conn: Connection) -> Generation | None:
    """The generation being filled, if any."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM index_generations WHERE status = 'building'")
        row = cur.fetchone()
    return _row(row) if row else None


def live(conn: Connection) -> list[Generation]:
    """The generations every change is applied to, locked against a switch or a drop until the transaction ends.

    FOR SHARE: a switch or gc waits for writers in flight, so no write lands in a generation
    after it was dropped, and none misses a generation created before its transaction began.
    """
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM index_generations WHERE status = ANY(%s) ORDER BY id FOR SHARE",
            (list(LIVE_STATUSES),),
        )
        return [_row(r) for r in cur.fetchall()]


def adopt(
    conn: Connection,
    generation_id: int,
    *,
    spec: EmbedderSpec,
    model_id: str,
    dimension: int,
    backend: str,
    target: VectorTarget,
) -> Generation:
    """Record the embedder and target of a generation created before they were known (generation 1).

    Only once: a concurrent runtime that recorded first wins, and its record is returned.
    """
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE index_generations SET embedder = %s, model_id = %s, dimension = %s, backend = %s, target = %s"
            " WHERE id = %s AND embedder IS NULL",
            (
                json.dumps(spec.as_json()),
                model_id,
                dimension,
                backend,
                json.dumps(target_as_json(target)),
                generation_id,
            ),
        )
    found = get(conn, generation_id)
    if found is None:
        raise GenerationError(f"index generation {generation_id} does not exist")
    return found


def create_building(
    conn: Connection,
    *,
    spec: EmbedderSpec,
    model_id: str,
    dimension: int,
    backend: str,
    target_for: Callable[[int, Generation], VectorTarget],
) -> Generation:
    """Start a building generation for this embedder (refused while another one builds)."""
    with conn.cursor() as cur:
        cur.execute("LOCK TABLE index_generations IN SHARE ROW EXCLUSIVE MODE")
        current = building(conn)
        if current is not None:
            raise GenerationError(
                f"generation {current.id} ({current.model_id}) is already building: finish it with "
                "`refarch reindex --switch` or abandon it with `refarch reindex --abort`"
            )
        now_active = active(conn)
        cur.execute("SELECT coalesce(max(id), 0) + 1 FROM index_generations")
        new_id = int(fetch_one(cur)[0])
        target = target_for(new_id, now_active)
        cur.execute(
            "INSERT INTO index_generations (id, status, embedder, model_id, dimension, backend, target)"
            " VALUES (%s, 'building', %s, %s, %s, %s, %s)",
            (new_id, json.dumps(spec.as_json()), model_id, dimension, backend, json.dumps(target_as_json(target))),
        )
    created = get(conn, new_id)
    assert created is not None
    return created


def current_source_text(conn: Connection) -> str | None:
    """The text fingerprint of the source definition applied (None before `refarch db migrate` applied one)."""
    with conn.cursor() as cur:
        cur.execute("SELECT current_source_text()")
        row = cur.fetchone()
    return row[0] if row else None


def progress(conn: Connection, generation_id: int) -> dict[str, Any]:
    """How far a generation is from holding every row at its current version (checked against the table).

    `missing` counts rows not indexed at their current version, `failed` those whose last attempt
    failed, `pending_deletes` vectors of rows the table no longer has. Complete = all three 0.
    """
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*),"
            " count(*) FILTER (WHERE s.status = 'indexed' AND s.indexed_version >= p.version),"
            " count(*) FILTER (WHERE s.status = 'failed')"
            " FROM source_rows p LEFT JOIN sync_state s ON s.product_id = p.id AND s.generation = %s",
            (generation_id,),
        )
        rows, indexed, failed = fetch_one(cur)
        cur.execute(
            "SELECT count(*) FROM sync_state s WHERE s.generation = %s AND s.status <> 'deleted'"
            " AND NOT EXISTS (SELECT 1 FROM source_rows p WHERE p.id = s.product_id)",
            (generation_id,),
        )
        pending_deletes = int(fetch_one(cur)[0])
        cur.execute(
            "SELECT count(*) FROM sync_state WHERE generation = %s AND status = 'indexed'"
            " AND indexed_at > now() - make_interval(secs => %s)",
            (generation_id, RATE_WINDOW_SECONDS),
        )
        recent = int(fetch_one(cur)[0])
    missing = int(rows) - int(indexed)
    rate = recent / RATE_WINDOW_SECONDS
    return {
        "rows": int(rows),
        "indexed": int(indexed),
        "missing": missing,
        "failed": int(failed),
        "pending_deletes": pending_deletes,
        "complete": missing == 0 and pending_deletes == 0,
        "rate_per_second": round(rate, 1),
        "eta_seconds": round(missing / rate, 1) if rate > 0 else (0.0 if missing == 0 else None),
    }


def _require_complete(conn: Connection, generation: Generation, what: str) -> None:
    state = progress(conn, generation.id)
    if not state["complete"]:
        raise IncompleteGenerationError(
            f"cannot {what}: generation {generation.id} ({generation.model_id}) lacks {state['missing']} of "
            f"{state['rows']} rows at their current version ({state['failed']} failed) and "
            f"{state['pending_deletes']} deletes; let Emu finish (or run `refarch reindex --resume`) and retry"
        )


def building_as_expected(conn: Connection, expected: int | None = None) -> Generation:
    """The building generation, which must be `expected` when one is named (a state machine's execution
    names the one it builds); GenerationError when none builds, or another one does."""
    found = building(conn)
    if found is None:
        if expected is None:
            raise GenerationError("no generation is building: start one with `refarch reindex`")
        raise GenerationError(f"generation {expected} is not building (none is): it was switched or abandoned")
    if expected is not None and found.id != expected:
        raise GenerationError(
            f"generation {expected} is not building (generation {found.id} is): it was switched, abandoned or replaced"
        )
    return found


def switch(conn: Connection, expected: int | None = None) -> tuple[Generation, Generation]:
    """Make the building generation active in one update, once it holds every row (else raise).

    `expected` names the generation the caller built (a state machine's execution): another one
    building (it was abandoned and replaced meanwhile) is refused. Returns (previous, new). The
    previous generation is retired and kept in sync for a rollback.

    Safe to repeat: when `expected` is already active (a retried step whose switch committed but
    whose answer was lost), the answer is the same again and nothing changes.
    """
    with conn.cursor() as cur:
        cur.execute("LOCK TABLE index_generations IN SHARE ROW EXCLUSIVE MODE")
        current = active(conn)
        if expected is not None and current.id == expected:
            previous = _last_retired(cur)
            if previous is not None:
                return previous, current
        new = building_as_expected(conn, expected)
        _require_complete(conn, new, "switch")
        _make_active(cur, new.id, current.id)
    return current, new


def _make_active(cur: Any, new_id: int, previous_id: int) -> None:
    """Retire the active generation and activate another: one commit, so readers see one or the other."""
    # Two statements: the one-active unique index is checked row by row.
    cur.execute("UPDATE index_generations SET status = 'retired', retired_at = now() WHERE id = %s", (previous_id,))
    cur.execute(
        "UPDATE index_generations SET status = 'active', activated_at = now(), retired_at = NULL WHERE id = %s",
        (new_id,),
    )


def _last_retired(cur: Any) -> Generation | None:
    """The generation retired most recently (the one a rollback restores), if any is kept."""
    cur.execute(
        f"SELECT {_COLUMNS} FROM index_generations WHERE status = 'retired' ORDER BY retired_at DESC, id DESC LIMIT 1"
    )
    row = cur.fetchone()
    return _row(row) if row else None


def rollback(conn: Connection) -> tuple[Generation, Generation]:
    """Make the most recently retired generation active again (it was kept in sync); returns (previous, restored)."""
    with conn.cursor() as cur:
        cur.execute("LOCK TABLE index_generations IN SHARE ROW EXCLUSIVE MODE")
        restored = _last_retired(cur)
        if restored is None:
            raise GenerationError("no retired generation to roll back to (it was dropped by --gc, or none existed)")
        _require_complete(conn, restored, "roll back")
        previous = active(conn)
        _make_active(cur, restored.id, previous.id)
    return previous, restored


def abort_building(conn: Connection) -> Generation:
    """Abandon the building generation: it stops receiving changes, no rollback restores it, and the
    next gc drops it (migration 0011)."""
    with conn.cursor() as cur:
        cur.execute("LOCK TABLE index_generations IN SHARE ROW EXCLUSIVE MODE")
        current = building(conn)
        if current is None:
            raise GenerationError("no generation is building")
        # Emu locks the live generations FOR SHARE while it writes: this waits for writes in flight.
        cur.execute("UPDATE index_generations SET status = 'abandoned' WHERE id = %s", (current.id,))
        cur.execute(
            "UPDATE bootstrap_runs SET status = 'failed', finished_at = now(), error = 'generation abandoned'"
            " WHERE generation = %s AND status = 'running'",
            (current.id,),
        )
    return current


def drop_expired(conn: Connection, grace: timedelta) -> list[Generation]:
    """Mark dropped the retired generations past the grace period and the abandoned ones, and delete
    their ledger rows; returns them. Their indexes are removed after this commits (`to_remove`).

    Serialised with switch, rollback and abort by the same table lock, and waits for Emu's writes
    in flight (their FOR SHARE locks); once it commits no writer or rollback sees them again.
    """
    with conn.cursor() as cur:
        cur.execute("LOCK TABLE index_generations IN SHARE ROW EXCLUSIVE MODE")
        cur.execute(
            f"SELECT {_COLUMNS} FROM index_generations"
            " WHERE (status = 'retired' AND retired_at < now() - %s) OR status = 'abandoned'"
            " ORDER BY id FOR UPDATE",
            (grace,),
        )
        found = [_row(r) for r in cur.fetchall()]
        ids = [g.id for g in found]
        if ids:
            cur.execute(
                "UPDATE index_generations SET status = 'dropped', dropped_at = now() WHERE id = ANY(%s)", (ids,)
            )
            cur.execute("DELETE FROM sync_state WHERE generation = ANY(%s)", (ids,))
    return found


def live_while_removing(conn: Connection) -> list[Generation]:
    """The live generations, held as they are until the transaction ends: no generation is created
    (and no index chosen for it), switched, rolled back or abandoned meanwhile, so what gc checks
    is still true when it deletes."""
    with conn.cursor() as cur:
        cur.execute("LOCK TABLE index_generations IN SHARE ROW EXCLUSIVE MODE")
        cur.execute(
            f"SELECT {_COLUMNS} FROM index_generations WHERE status = ANY(%s) ORDER BY id", (list(LIVE_STATUSES),)
        )
        return [_row(r) for r in cur.fetchall()]


def to_remove(conn: Connection) -> list[Generation]:
    """Dropped generations whose index was not removed yet (a removal that failed is tried again)."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM index_generations WHERE status = 'dropped'"
            " AND NOT coalesce((target ->> 'index_removed')::boolean, false) ORDER BY id"
        )
        return [_row(r) for r in cur.fetchall()]


def mark_index_removed(conn: Connection, generation_id: int) -> None:
    """Record that a dropped generation's index is gone."""
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE index_generations SET target = coalesce(target, '{}') || '{\"index_removed\": true}' WHERE id = %s",
            (generation_id,),
        )
