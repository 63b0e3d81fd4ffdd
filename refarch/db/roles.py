"""The database roles of the runtimes (created and granted by migration 0005) and their logins.

Each runtime connects as its own role with only the rights its code needs; the migrate custom
resource, the only holder of the admin credentials, turns each role's LOGIN on with the password
from that runtime's generated secret. ALTER ROLE takes no bind parameters and Postgres logs a
failed statement's text (RDS exports that log to CloudWatch), so the password never travels: the
statement carries its SCRAM-SHA-256 verifier, computed here, which Postgres stores as it is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from psycopg2 import sql

from refarch.db import Connection
from refarch.settings import Settings

# Runtime -> database role. The runtimes' secrets are keyed by these runtime names.
RUNTIME_ROLES = {"web": "refarch_web", "emu": "refarch_emu", "pelican": "refarch_pelican"}


def vector_table_grants(table: str) -> sql.Composed:
    """Run after a vector table is created: the grants migration 0005 gives an existing product_vectors."""
    return sql.SQL(
        """
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'refarch_emu') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO refarch_emu;
        GRANT SELECT ON {table} TO refarch_web, refarch_pelican;
    END IF;
END $$
"""
    ).format(table=sql.Identifier(table))


def enable_login(conn: Connection, runtime: str, *, username: str, password: str) -> None:
    """Let `runtime`'s role log in with this secret's username and password (idempotent; rotates the password)."""
    role = RUNTIME_ROLES.get(runtime)
    if role is None:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {sorted(RUNTIME_ROLES)}")
    if username != role:
        raise ValueError(f"the {runtime} secret names user {username!r}; the {runtime} role is {role!r}")
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(scram_sha256_verifier(password))
            )
        )
    conn.commit()


def scram_sha256_verifier(password: str, *, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier Postgres stores for `password` (RFC 5802/7677, Postgres' own format).

    Only ASCII passwords: Postgres would SASLprep-normalise others first (generated secrets are ASCII).
    """
    if not password.isascii() or not password:
        raise ValueError("database passwords must be non-empty ASCII (generated secrets are)")
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def enable_runtime_logins(conn: Connection, settings: Settings) -> list[str]:
    """Enable the login of every runtime whose secret the settings name; return those runtimes."""
    from refarch.secrets import credentials_from_secret

    enabled = []
    for runtime, arn in sorted(settings.database_role_secret_arns.items()):
        username, password = credentials_from_secret(arn, settings.aws_region)
        enable_login(conn, runtime, username=username, password=password)
        enabled.append(runtime)
    return enabled
