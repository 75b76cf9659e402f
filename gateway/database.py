"""The gateway's database: embedded SQLite by default, PostgreSQL by DSN for shared deployments.

One schema for both, applied by numbered migrations recorded in `schema_migrations`. SQL is written once
with `?` placeholders and translated for PostgreSQL. The API is synchronous: the ledger writer, the key
store and reports call it from worker threads, never from the event loop.

Example::

    db = Database("var/ledger.sqlite3")        # or Database("postgresql://user@host/db")
    db.migrate()
    db.query("SELECT count(*) FROM requests")
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE IF NOT EXISTS requests (
            id TEXT PRIMARY KEY,
            ts DOUBLE PRECISION NOT NULL,
            tenant TEXT NOT NULL,
            route TEXT NOT NULL,
            modality TEXT NOT NULL,
            deployment TEXT,
            provider TEXT,
            openness TEXT,
            attempts INTEGER NOT NULL,
            fallbacks INTEGER NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            images INTEGER NOT NULL,
            device_seconds DOUBLE PRECISION NOT NULL,
            cost_usd DOUBLE PRECISION NOT NULL,
            cost_estimated INTEGER NOT NULL,
            latency_ms DOUBLE PRECISION NOT NULL,
            status INTEGER NOT NULL,
            error_code TEXT,
            stream INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
        """,
    ),
    (
        2,
        """
        CREATE TABLE IF NOT EXISTS api_keys (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            name TEXT NOT NULL,
            salt TEXT NOT NULL,
            hash TEXT NOT NULL,
            created DOUBLE PRECISION NOT NULL,
            revoked DOUBLE PRECISION,
            daily_usd DOUBLE PRECISION,
            monthly_usd DOUBLE PRECISION,
            rpm INTEGER,
            tpm INTEGER
        );
        ALTER TABLE requests ADD COLUMN key_id TEXT;
        CREATE INDEX IF NOT EXISTS requests_tenant_ts ON requests (tenant, ts);
        """,
    ),
    (
        3,
        """
        ALTER TABLE requests ADD COLUMN request_id TEXT;
        CREATE INDEX IF NOT EXISTS requests_request_id ON requests (request_id);
        """,
    ),
]


class Cursorish(Protocol):
    def fetchall(self) -> list[tuple[Any, ...]]: ...


class Database:
    def __init__(self, url: str | Path) -> None:
        self.url = str(url)
        self.dialect = "postgres" if self.url.startswith(("postgresql://", "postgres://")) else "sqlite"

    def __repr__(self) -> str:
        # A DSN may hold a password: show only the dialect and, for SQLite, the path.
        return f"Database({self.dialect}:{self.url if self.dialect == 'sqlite' else '...'})"

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.dialect == "postgres" else statement

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """A connection whose `with` block is one transaction."""
        if self.dialect == "postgres":
            import psycopg

            with psycopg.connect(self.url, connect_timeout=10) as pg:
                yield pg
            return
        Path(self.url).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.url, timeout=30, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            with conn:
                yield conn
        finally:
            conn.close()

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        with self.connect() as conn:
            conn.execute(self.sql(statement), tuple(params))

    def executemany(self, conn: Any, statement: str, rows: list[tuple[Any, ...]]) -> None:
        if self.dialect == "postgres":
            with conn.cursor() as cur:
                cur.executemany(self.sql(statement), rows)
        else:
            conn.executemany(statement, rows)

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            rows: list[tuple[Any, ...]] = list(conn.execute(self.sql(statement), tuple(params)).fetchall())
            return rows

    def migrate(self) -> list[int]:
        """Apply the migrations this database has not seen; return their numbers."""
        applied: list[int] = []
        with self.connect() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied DOUBLE PRECISION)"
            )
            if self.dialect == "postgres":
                conn.execute(
                    "LOCK TABLE schema_migrations IN EXCLUSIVE MODE"
                )  # two processes starting at once
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations").fetchall()}
            for version, script in MIGRATIONS:
                if version in done:
                    continue
                for statement in (s.strip() for s in script.split(";")):
                    if statement:
                        conn.execute(statement)
                conn.execute(
                    self.sql("INSERT INTO schema_migrations (version, applied) VALUES (?, ?)"),
                    (version, time.time()),
                )
                applied.append(version)
        return applied
