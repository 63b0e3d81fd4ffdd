"""The source definition: which table this deployment keeps searchable, and how (docs/own-table.md).

One small TOML file names the table and its primary key, the text to embed (a template over
columns), the columns copied into the vector index as metadata, the filterable columns, what the
page shows and lets a signed-in user edit, and the lexical weights. `load` reads it and refuses a
definition that cannot work (`SourceError`, every problem listed) before anything changes;
`refarch.source.capture` checks it against the database and creates the capture from it.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from refarch.source.chunking import Chunking, parse_chunking

KeyType = Literal["bigint", "uuid", "text"]
ColumnType = Literal["text", "number", "integer", "boolean", "timestamp"]
LexicalWeight = Literal["A", "B", "C", "D"]

KEY_TYPES: tuple[KeyType, ...] = ("bigint", "uuid", "text")
COLUMN_TYPES: tuple[ColumnType, ...] = ("text", "number", "integer", "boolean", "timestamp")
LEXICAL_WEIGHTS: tuple[LexicalWeight, ...] = ("A", "B", "C", "D")

# Pinecone's limit on one vector's metadata; the estimate below counts JSON bytes (UTF-8 text can take
# up to 4 bytes a character) plus the fields the system adds itself (ids, version, content hash).
PINECONE_METADATA_LIMIT_BYTES = 40_960
_SYSTEM_METADATA_BYTES = 256
# What a chunk of a long text adds: its number, the row's count, its own hash and its place in the text.
_CHUNK_METADATA_BYTES = 160
_FIXED_METADATA_BYTES: dict[ColumnType, int] = {"number": 32, "integer": 24, "boolean": 8, "timestamp": 40}
# A name placed in SQL text (quoted, but still only these): lower-case identifiers, as people write them.
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")

DEFAULT_SOURCE = "products"
# Every row has these in `source_records` (refarch.source.capture): no column may take their names.
RESERVED_NAMES = ("id", "key", "version", "values", "search_document")


class SourceError(ValueError):
    """The definition cannot work; `problems` lists every reason, each naming the field to fix."""

    def __init__(self, where: str, problems: list[str]) -> None:
        super().__init__(f"{where}: " + "; ".join(problems))
        self.where = where
        self.problems = problems


@dataclass(frozen=True)
class Column:
    """One column of the source table the system reads (embeds, stores, shows, edits or filters on)."""

    name: str
    type: ColumnType = "text"
    label: str = ""
    show: bool = False
    edit: bool = False
    required: bool = False
    max_length: int | None = None
    metadata: bool = False
    filter: bool = False
    lexical: LexicalWeight | None = None

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    def summary(self) -> str:
        """One line: the column, its type and what the system does with it."""
        roles = [
            name
            for name, on in (
                ("shown", self.show),
                ("editable", self.edit),
                ("metadata", self.metadata),
                ("filter", self.filter),
            )
            if on
        ]
        weight = f", keyword weight {self.lexical}" if self.lexical else ""
        return f"{self.name} ({self.type}{weight}): {', '.join(roles) or 'read only'}"


@dataclass(frozen=True)
class Source:
    """A parsed, valid source definition."""

    name: str
    schema: str
    table: str
    key: str
    key_type: KeyType
    embed: str
    title_column: str
    columns: tuple[Column, ...]
    chunking: Chunking = field(default_factory=Chunking)
    path: str = field(default="", compare=False)

    @property
    def qualified_table(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def is_builtin_products(self) -> bool:
        """The project's own demo table, which carries its version column (migrations 0001-0014)."""
        return self.qualified_table == "public.products" and self.key == "id"

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    def embedded_columns(self) -> list[str]:
        """The columns the embedding template names, in order of first use."""
        return list(dict.fromkeys(name for _, name in template_parts(self.embed) if name is not None))

    def metadata_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.metadata]

    def watched_columns(self) -> list[str]:
        """A change to any of these is a change to sync (a new version); to any other column it is not."""
        return list(dict.fromkeys([*self.embedded_columns(), *self.metadata_columns()]))

    def render(self, row: dict[str, Any]) -> str:
        """The embedded text of a row, as the database's `source_rows.embedding_text` renders it."""
        return "".join(
            literal + ("" if name is None or row.get(name) is None else str(row[name]))
            for literal, name in template_parts(self.embed)
        )

    def fingerprint(self, part: Literal["text", "metadata"]) -> str:
        """What a generation's vectors depend on: the embedded text, or the metadata columns."""
        value = self.embed if part == "text" else ",".join(self.metadata_columns())
        if part == "text" and not self.chunking.is_default:
            # How texts are chunked is part of what the vectors are (a change is a new generation); the
            # default adds nothing, so a definition written before chunking keeps its generation.
            value += f"\nchunking: {self.chunking.key()}"
        return hashlib.sha256(f"{self.qualified_table}\n{self.key}\n{value}".encode()).hexdigest()[:16]


def template_parts(template: str) -> list[tuple[str, str | None]]:
    """(literal text, column name or None) pairs of an embedding template such as "{name}. {body}"."""
    return [(literal, name) for literal, name, _, _ in string.Formatter().parse(template)]


def builtin_path(name: str) -> Path:
    """A definition shipped with the project (definitions/<name>.toml)."""
    return Path(str(resources.files("refarch.source") / "definitions" / f"{name}.toml"))


def load(path: str | Path | None = None) -> Source:
    """The source definition in `path` (a file, or the name of a shipped one); None: the default (products)."""
    where = Path(path) if path and Path(path).suffix == ".toml" else builtin_path(str(path or DEFAULT_SOURCE))
    try:
        data = tomllib.loads(where.read_text())
    except FileNotFoundError:
        raise SourceError(str(where), ["no such file (REFARCH_SOURCE or --source names the definition)"]) from None
    except tomllib.TOMLDecodeError as err:
        raise SourceError(str(where), [f"not valid TOML: {err}"]) from None
    return parse(data, where=str(where))


def parse(data: dict[str, Any], *, where: str = "source definition") -> Source:
    """A Source from a definition's data, or SourceError listing every problem."""
    problems: list[str] = []
    unknown = set(data) - {"name", "table", "key", "embed", "title", "columns", "chunking"}
    if unknown:
        problems.append(f"unknown setting(s) {', '.join(sorted(unknown))}")

    table = str(data.get("table", ""))
    schema, _, bare = table.rpartition(".")
    if not table or not IDENTIFIER.fullmatch(bare) or (schema and not IDENTIFIER.fullmatch(schema)):
        problems.append(f"table {table!r} must be a table name such as 'public.articles' (lower case)")

    key = data.get("key") or {}
    key_column, key_type = str(key.get("column", "")), str(key.get("type", ""))
    if not IDENTIFIER.fullmatch(key_column):
        problems.append(f"key.column {key_column!r} must name the table's primary key column")
    if key_type not in KEY_TYPES:
        problems.append(f"key.type {key_type!r} is not supported: a key must be one of {', '.join(KEY_TYPES)}")

    columns: list[Column] = []
    for name, spec in (data.get("columns") or {}).items():
        column, column_problems = _column(name, spec)
        problems += column_problems
        if column is not None:
            columns.append(column)
    known = {c.name for c in columns}

    embed = str(data.get("embed", ""))
    try:
        named = [name for _, name in template_parts(embed) if name is not None]
    except ValueError as err:
        problems.append(f"embed template {embed!r} is not valid: {err}")
        named = []
    if not named:
        problems.append("embed must be a template naming at least one column, such as '{title}. {body}'")
    for name in named:
        if name not in known:
            problems.append(f"embed names {{{name}}}, which is not a column under [columns]")

    title = str(data.get("title", ""))
    if title not in known:
        problems.append(f"title {title!r} must name a column under [columns] (results are titled by it)")
    reserved = known & set(RESERVED_NAMES)
    if reserved:
        taken = ", ".join(sorted(reserved))
        problems.append(f"column name(s) {taken} are the system's own ({', '.join(RESERVED_NAMES)}): rename")
    if key_column in known:
        problems.append(f"key column {key_column!r} is the row's identity; it cannot also be listed under [columns]")
    if not any(c.lexical for c in columns):
        problems.append("no column has a lexical weight: give at least one (lexical = 'A') for keyword search")
    for column in columns:
        if column.edit and not column.show:
            problems.append(f"column {column.name!r} is editable but not shown (set show = true)")
    chunking = parse_chunking(data.get("chunking"), problems)
    metadata_bytes = _metadata_bytes(columns, problems)
    if metadata_bytes > PINECONE_METADATA_LIMIT_BYTES:
        problems.append(
            f"metadata columns can take up to {metadata_bytes:,} bytes per row, over Pinecone's"
            f" {PINECONE_METADATA_LIMIT_BYTES:,}: store fewer or shorter columns as metadata"
        )
    if problems:
        raise SourceError(where, problems)
    return Source(
        name=str(data.get("name") or bare),
        schema=schema or "public",
        table=bare,
        key=key_column,
        key_type=key_type,  # type: ignore[arg-type]  # checked against KEY_TYPES above
        embed=embed,
        title_column=title,
        columns=tuple(columns),
        chunking=chunking,
        path=where,
    )


def _column(name: str, spec: Any) -> tuple[Column | None, list[str]]:
    if not IDENTIFIER.fullmatch(name):
        return None, [f"column name {name!r} must be a lower-case identifier"]
    if not isinstance(spec, dict):
        return None, [f"columns.{name} must be a table of settings"]
    problems: list[str] = []
    allowed = {"type", "label", "show", "edit", "required", "max_length", "metadata", "filter", "lexical"}
    unknown = set(spec) - allowed
    if unknown:
        problems.append(f"columns.{name}: unknown setting(s) {', '.join(sorted(unknown))}")
    kind = spec.get("type", "text")
    if kind not in COLUMN_TYPES:
        problems.append(f"columns.{name}.type {kind!r} must be one of {', '.join(COLUMN_TYPES)}")
    weight = spec.get("lexical")
    if weight is not None and (weight not in LEXICAL_WEIGHTS or kind != "text"):
        problems.append(f"columns.{name}.lexical must be one of A, B, C, D (highest first), on a text column")
    max_length = spec.get("max_length")
    if max_length is not None and (not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1):
        problems.append(f"columns.{name}.max_length must be a positive whole number")
    flags = {flag: spec.get(flag, False) for flag in ("show", "edit", "required", "metadata", "filter")}
    for flag, value in flags.items():
        if not isinstance(value, bool):
            problems.append(f"columns.{name}.{flag} must be true or false")
    if flags["filter"] and not flags["metadata"]:
        problems.append(f"columns.{name}: a filter column must also be metadata (the vector index filters on it)")
    if problems:
        return None, problems
    label = str(spec.get("label", ""))
    return Column(name=name, label=label, max_length=max_length, lexical=weight, type=kind, **flags), []


def _metadata_bytes(columns: list[Column], problems: list[str]) -> int:
    total = _SYSTEM_METADATA_BYTES + _CHUNK_METADATA_BYTES
    for column in columns:
        if not column.metadata:
            continue
        if column.type == "text":
            if column.max_length is None:
                problems.append(
                    f"metadata column {column.name!r} has no max_length: give one, so a row's metadata"
                    f" stays within Pinecone's {PINECONE_METADATA_LIMIT_BYTES:,} bytes"
                )
                continue
            total += len(json.dumps(column.name)) + 4 * column.max_length + 4
        else:
            total += len(json.dumps(column.name)) + _FIXED_METADATA_BYTES[column.type]
    return total
