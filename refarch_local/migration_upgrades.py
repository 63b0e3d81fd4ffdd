"""Every migration, applied to a populated database of the schema before it: the data keeps its meaning,
and the upgraded database ends up with the schema of a fresh install.

`check_upgrade(migration, new_database)` does, for one migration:

1. builds the schema before it (`migrate(up_to=...)`) and fills it as that release would have
   (`upgrade_population.populate`: edits, deletes, tombstones, a ledger entry in every status,
   generations in every status, a build in progress);
2. takes a snapshot of the data: every table's rows and what people see per product
   (`product_sync_status`);
3. applies the migration alone, then checks that every row of every table is what it was (in the
   columns it had), unless the migration is meant to change it (`REWRITTEN_TABLES`), and that the
   migration's own expectations hold (`EXPECTATIONS`: e.g. 0012's tombstone versions);
4. migrates to the head and compares the schema with a fresh install's (`schema_snapshot`), which
   gets the same runtime-created vector tables; any difference fails.

`check_upgrades(new_database)` runs it for every migration and returns how many were upgraded (the
deploy rehearsal reports it as `migrations_upgraded`). `new_database()` returns the DSN of a new,
empty database on each call, and `new_database(template=dsn)` a copy of one (CREATE DATABASE …
TEMPLATE); `scratch_databases(server_dsn)` makes one that drops them afterwards, and
`check_upgrades_on_server(server_dsn)` runs the checks with one. The history a database lived
through before each migration, and a fresh install, are built once per `new_database` and copied
for every check that needs them (an upgrade check of every migration is then one walk through the
releases, not one walk per migration).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from psycopg2 import sql

from refarch.db import Connection, Database, connect, fetch_one, migrate, migration_files, with_database
from refarch.index.pgvector_index import PgVectorIndex
from refarch_local.schema_snapshot import schema_diff
from refarch_local.upgrade_population import populate

Row = dict[str, Any]


class UpgradeMismatch(Exception):
    """A migration applied to a populated database lost or changed what the data means, or left a schema
    that differs from a fresh install's."""

    def __init__(self, migration: str, problems: list[str]) -> None:
        self.migration = migration
        self.problems = problems
        super().__init__(f"upgrade through {migration} on a populated database: " + "; ".join(problems))


@dataclass(frozen=True)
class DataSnapshot:
    """What a database holds: every table's rows (as JSON objects) and what people see per product."""

    tables: dict[str, list[Row]]
    sync_status: list[Row]

    def rows(self, table: str) -> list[Row]:
        """The rows of one table (none if it does not exist)."""
        return self.tables.get(table, [])


def _sorted(rows: list[Row]) -> list[Row]:
    return sorted(rows, key=lambda row: json.dumps(row, sort_keys=True, default=str))


def _rows_of(conn: Connection, relation: str) -> list[Row]:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT to_jsonb(r) FROM {} r").format(sql.Identifier(relation)))
        return _sorted([row[0] for row in cur.fetchall()])


def data_snapshot(conn: Connection) -> DataSnapshot:
    """Every table's rows (but the migration runner's own) and the product_sync_status view's, if it exists."""
    with conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")
        tables = sorted(row[0] for row in cur.fetchall())
        cur.execute("SELECT to_regclass('product_sync_status') IS NOT NULL")
        has_view = fetch_one(cur)[0]
    return DataSnapshot(
        tables={table: _rows_of(conn, table) for table in tables},
        sync_status=_rows_of(conn, "product_sync_status") if has_view else [],
    )


# --- What each migration is meant to do to existing data -------------------------------------------

Expectation = Callable[[DataSnapshot, DataSnapshot], list[str]]


def differences(what: str, expected: list[Row], actual: list[Row]) -> list[str]:
    """One problem naming the rows `what` lacks and those it should not have (none when they are equal)."""
    expected, actual = _sorted(expected), _sorted(actual)
    if expected == actual:
        return []
    missing = [row for row in expected if row not in actual]
    unexpected = [row for row in actual if row not in expected]
    return [f"{what}: {len(missing)} row(s) missing {missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}"]


def _without(rows: list[Row], column: str) -> list[Row]:
    return [{k: v for k, v in row.items() if k != column} for row in rows]


def _tombstones(before: DataSnapshot) -> dict[int, int]:
    """Each deleted id's highest tombstone version in the outbox."""
    found: dict[int, int] = {}
    for row in before.rows("sync_outbox"):
        if row["op"] == "delete":
            found[row["product_id"]] = max(found.get(row["product_id"], 0), row["version"])
    return found


def _ledger_versions(before: DataSnapshot) -> dict[int, int]:
    """Each id's highest version in any generation's ledger."""
    found: dict[int, int] = {}
    for row in before.rows("sync_state"):
        found[row["product_id"]] = max(found.get(row["product_id"], 0), row["indexed_version"])
    return found


def _active_generation(snapshot: DataSnapshot) -> int | None:
    """The active generation's id (None before 0010: one ledger)."""
    return next((g["id"] for g in snapshot.rows("index_generations") if g["status"] == "active"), None)


def expect_0007_rows_searchable(before: DataSnapshot, after: DataSnapshot) -> list[str]:
    """0007: every existing product gets its search document (the generated column is filled for old rows)."""
    return [f"product {p['id']} has no search document" for p in after.rows("products") if not p["search_document"]]


def expect_0010_ledger_is_generation_1(before: DataSnapshot, after: DataSnapshot) -> list[str]:
    """0010: what was indexed so far is generation 1's, which is active, and every bootstrap run filled it."""
    problems = []
    generations = [(g["id"], g["status"]) for g in after.rows("index_generations")]
    if generations != [(1, "active")]:
        problems.append(f"generations {generations}, expected generation 1 alone, active")
    for table in ("sync_state", "bootstrap_runs"):
        others = sorted({row["generation"] for row in after.rows(table)} - {1})
        if others:
            problems.append(f"{table} rows in generations {others}, expected all in generation 1")
    return problems


def expect_0011_aborted_builds_abandoned(before: DataSnapshot, after: DataSnapshot) -> list[str]:
    """0011: builds aborted before (retired at -infinity, never active) are abandoned; dropped generations
    count their index as removed (their gc removed it); nothing else about a generation changes."""
    expected = []
    for g in before.rows("index_generations"):
        if g["status"] == "retired" and g["retired_at"] == "-infinity" and g["activated_at"] is None:
            g = {**g, "status": "abandoned", "retired_at": None}
        if g["status"] == "dropped":
            g = {**g, "target": {**(g["target"] or {}), "index_removed": True}}
        expected.append(g)
    return differences("index generations", expected, after.rows("index_generations"))


def expect_0012_tombstones_kept(before: DataSnapshot, after: DataSnapshot) -> list[str]:
    """0012: each deleted id keeps its highest tombstone version; a row inserted again whose id the active
    ledger says is deleted shows as pending (it was shown indexed), every other status is unchanged."""
    kept = [{"product_id": pid, "last_version": v} for pid, v in _tombstones(before).items()]
    active = _active_generation(before)
    deleted_in_ledger = {
        s["product_id"]
        for s in before.rows("sync_state")
        if s["status"] == "deleted" and s.get("generation", active) == active
    }
    shown = [
        {**row, "status": "pending"} if row["product_id"] in deleted_in_ledger else row for row in before.sync_status
    ]
    return differences("deleted_product_versions", kept, after.rows("deleted_product_versions")) + differences(
        "product_sync_status", shown, after.sync_status
    )


def renumbered_versions(before: DataSnapshot) -> dict[int, int]:
    """0013: product id -> its new version, for rows whose version is at or below their id's last tombstone
    or below a version a ledger holds for the id: one past every version the id was given."""
    ledger = _ledger_versions(before)
    tombstone = {d["product_id"]: d["last_version"] for d in before.rows("deleted_product_versions")}
    renumbered = {}
    for p in before.rows("products"):
        pid, version = p["id"], p["version"]
        if version <= tombstone.get(pid, 0) or version < ledger.get(pid, 0):
            renumbered[pid] = 1 + max(version, tombstone.get(pid, 0), ledger.get(pid, 0))
    return renumbered


def expect_0013_reinserted_rows_renumbered(before: DataSnapshot, after: DataSnapshot) -> list[str]:
    """0013: a row inserted again before 0012 moves past every version its id had (nothing else about any
    row changes but its updated_at), the move is captured like an edit (one unsent outbox row at the new
    version), and the row shows as pending until Emu indexes it (a failed one stays failed)."""
    renumbered = renumbered_versions(before)
    if not renumbered and _tombstones(before):
        return ["no row inserted again before 0012 in this database: nothing was checked"]
    products = [{**p, "version": renumbered.get(p["id"], p["version"])} for p in before.rows("products")]
    old_ids = {o["id"] for o in before.rows("sync_outbox")}
    kept = [o for o in after.rows("sync_outbox") if o["id"] in old_ids]
    added = [
        {k: o[k] for k in ("product_id", "op", "version", "enqueued_at")}
        for o in after.rows("sync_outbox")
        if o["id"] not in old_ids
    ]
    captured = [{"product_id": pid, "op": "update", "version": v, "enqueued_at": None} for pid, v in renumbered.items()]
    shown = [
        {
            **row,
            "version": renumbered[row["product_id"]],
            "status": "failed" if row["status"] == "failed" else "pending",
        }
        if row["product_id"] in renumbered
        else row
        for row in before.sync_status
    ]
    return (
        differences("products", _without(products, "updated_at"), _without(after.rows("products"), "updated_at"))
        + differences("sync_outbox rows written before", before.rows("sync_outbox"), kept)
        + differences("sync_outbox rows added", captured, added)
        + differences("product_sync_status", shown, after.sync_status)
    )


EXPECTATIONS: dict[str, Expectation] = {
    "0007": expect_0007_rows_searchable,
    "0010": expect_0010_ledger_is_generation_1,
    "0011": expect_0011_aborted_builds_abandoned,
    "0012": expect_0012_tombstones_kept,
    "0013": expect_0013_reinserted_rows_renumbered,
}
# Tables whose existing rows a migration changes on purpose (its expectation says how).
REWRITTEN_TABLES: dict[str, set[str]] = {"0011": {"index_generations"}, "0013": {"products", "sync_outbox"}}
# Migrations that change what people see per product on purpose (their expectation says how).
SYNC_STATUS_RECOMPUTED = {"0012", "0013"}


def rows_kept(migration: str, before: DataSnapshot, after: DataSnapshot) -> list[str]:
    """Every table that existed keeps its rows in the columns it had, and what people see is unchanged,
    except where the migration is meant to change them."""
    number = migration[:4]
    problems = []
    for table, rows in before.tables.items():
        if table in REWRITTEN_TABLES.get(number, set()):
            continue
        columns = set(rows[0]) if rows else set()
        now = [{k: v for k, v in row.items() if k in columns} for row in after.rows(table)]
        problems += differences(table, rows, now)
    if number not in SYNC_STATUS_RECOMPUTED and before.sync_status:
        problems += differences("product_sync_status", before.sync_status, after.sync_status)
    return problems


# --- Running the checks -----------------------------------------------------------------------------


def _snapshot(dsn: str) -> DataSnapshot:
    conn = connect(dsn)
    try:
        return data_snapshot(conn)
    finally:
        conn.close()


def vector_tables(dsn: str) -> dict[str, int]:
    """The pgvector tables the runtimes created (product_vectors, product_vectors_g<n>) and their dimensions."""
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT c.relname, a.atttypmod FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'embedding'"
                " WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname LIKE 'product\\_vectors%%'"
            )
            return dict(cur.fetchall())
    finally:
        conn.close()


def add_vector_tables(dsn: str, vectors: dict[str, int]) -> None:
    """The vector tables the runtimes would create, by name and dimension."""
    database = Database(dsn)
    for table, dimension in vectors.items():
        PgVectorIndex(database, dimension, table).ensure()
    database.close()


def upgrade_to_head_matches_fresh_install(upgraded: str, new_database: NewDatabase) -> list[str]:
    """Migrate to the head; the schema's differences from a fresh install's (every migration on an empty
    database, then the vector tables the runtimes would create), as problems (none: equal)."""
    migrate(upgraded)
    files = tuple(migration_files())
    if files not in new_database.fresh:
        new_database.fresh[files] = new_database.owner()
        migrate(new_database.fresh[files])
    fresh = new_database(template=new_database.fresh[files])
    add_vector_tables(fresh, vector_tables(upgraded))
    diff = schema_diff(upgraded, fresh)
    return ["schema differs from a fresh install:\n" + "\n".join(diff)] if diff else []


def populated_before(migration: str, new_database: NewDatabase) -> str:
    """A new database that lived through every release before `migration`: each migration applied in
    turn, and after each, the data its release's runtimes write (under ids of its own).

    Each release's state is kept as a template: the next call continues from the latest one it can."""
    files = tuple(migration_files())
    names = [name for name, _ in files]
    target = names.index(migration)
    lived = new_database.lived
    done = next((n for n in range(target, 0, -1) if files[:n] in lived), 0)
    dsn = new_database(template=lived[files[:done]]) if done else new_database()
    for release in range(done + 1, target + 1):
        migrate(dsn, up_to=names[release - 1])
        populate(dsn, release)
        lived[files[:release]] = new_database.owner(template=dsn)
    return dsn


def check_upgrade(migration: str, new_database: NewDatabase) -> DataSnapshot:
    """Apply `migration` to a populated database of the schema before it; raise UpgradeMismatch if the
    data's meaning changed or the upgraded schema differs from a fresh install's. Returns the data as
    the migration left it."""
    dsn = populated_before(migration, new_database)
    before = _snapshot(dsn)
    migrate(dsn, up_to=migration)
    after = _snapshot(dsn)
    expectation = EXPECTATIONS.get(migration[:4])
    problems = rows_kept(migration, before, after) + (expectation(before, after) if expectation else [])
    problems += upgrade_to_head_matches_fresh_install(dsn, new_database)
    if problems:
        raise UpgradeMismatch(migration, problems)
    return after


def check_upgrades(new_database: NewDatabase) -> int:
    """Check the upgrade through every migration (see check_upgrade); return how many were upgraded."""
    names = [name for name, _ in migration_files()]
    for name in names:
        check_upgrade(name, new_database)
    return len(names)


def check_upgrades_on_server(server_dsn: str) -> int:
    """check_upgrades on scratch databases of this server, dropped afterwards (what the rehearsal calls)."""
    with scratch_databases(server_dsn) as new_database:
        return check_upgrades(new_database)


Migrations = tuple[tuple[str, str], ...]  # (name, sql) of the migrations a database has had


class NewDatabase:
    """Makes databases on one server: `new()` an empty one, `new(template=dsn)` a copy of one nobody is
    connected to (CREATE DATABASE … TEMPLATE); `drop()` drops every one it made.

    It keeps the templates the checks build, keyed by the migrations applied (their text included, so
    a changed migration never reuses an old history): `lived`, the history before each migration, and
    `fresh`, a fresh install. A `sibling()` shares them (its `owner` makes and drops them) and drops
    only what it made itself."""

    def __init__(self, server_dsn: str, owner: NewDatabase | None = None) -> None:
        self.server_dsn = server_dsn
        self.made: list[str] = []
        self.owner: NewDatabase = owner or self
        self.lived: dict[Migrations, str] = self.owner.lived if owner else {}
        self.fresh: dict[Migrations, str] = self.owner.fresh if owner else {}

    def __call__(self, template: str | None = None) -> str:
        name = f"upgrade_{uuid.uuid4().hex[:12]}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            source = urlsplit(template).path.lstrip("/")
            statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(source))
        _admin(self.server_dsn, statement)
        self.made.append(name)
        return with_database(self.server_dsn, name)

    def sibling(self) -> NewDatabase:
        return NewDatabase(self.server_dsn, owner=self.owner)

    def drop(self) -> None:
        for name in self.made:
            _admin(self.server_dsn, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self.made.clear()


@contextmanager
def scratch_databases(server_dsn: str) -> Iterator[NewDatabase]:
    """A maker of new databases on this server (empty or copies); every one it made is dropped on exit."""
    new_database = NewDatabase(server_dsn)
    try:
        yield new_database
    finally:
        new_database.drop()


def _admin(server_dsn: str, statement: sql.Composed) -> None:
    conn = connect(server_dsn, autocommit=True, application_name="refarch-upgrade-check")
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()
