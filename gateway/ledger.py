"""The ledger: one row per request in SQLite (WAL), written by a background thread.

`record()` only puts the row on a queue, so the event loop never waits for the disk. The writer commits
in small batches as soon as rows arrive. A `kill -9` can lose at most the rows queued and not yet
committed (one batch, milliseconds of traffic); `aclose()` flushes everything on a clean stop.

Example::

    ledger = Ledger("var/ledger.sqlite3"); ledger.start()
    ledger.record(LedgerRow(id="req-1", tenant="acme", ...))
    await ledger.aclose()
"""

from __future__ import annotations

import asyncio
import dataclasses
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
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
    device_seconds REAL NOT NULL,
    cost_usd REAL NOT NULL,
    cost_estimated INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    status INTEGER NOT NULL,
    error_code TEXT,
    stream INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
"""
_BATCH = 512


@dataclass(slots=True)
class LedgerRow:
    id: str
    ts: float
    tenant: str
    route: str
    modality: str
    deployment: str | None
    provider: str | None
    openness: str | None
    attempts: int
    fallbacks: int
    prompt_tokens: int
    completion_tokens: int
    images: int
    device_seconds: float
    cost_usd: float
    cost_estimated: bool
    latency_ms: float
    status: int
    error_code: str | None
    stream: bool


_COLUMNS = [f.name for f in dataclasses.fields(LedgerRow)]
_INSERT = f"INSERT OR REPLACE INTO requests ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


class Ledger:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._queue: queue.SimpleQueue[LedgerRow | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._written = 0
        self._idle = threading.Condition()
        self._pending = 0

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def record(self, row: LedgerRow) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(row)

    def _run(self) -> None:
        db = self._connect()
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < _BATCH:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                self._write(db, batch)
                if stop:
                    return
        finally:
            db.close()

    def _write(self, db: sqlite3.Connection, batch: list[LedgerRow]) -> None:
        rows = [dataclasses.astuple(r) for r in batch]
        for delay in (0.0, 0.05, 0.2, 1.0, 2.0):  # another process (report, second worker) may hold the lock
            time.sleep(delay)
            try:
                with db:
                    db.executemany(_INSERT, rows)
                break
            except sqlite3.OperationalError:
                continue
        with self._idle:
            self._pending -= len(batch)
            self._written += len(batch)
            self._idle.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every recorded row is committed (tests and shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    async def aflush(self, wait_s: float = 10.0) -> bool:
        return await asyncio.to_thread(self.flush, wait_s)

    async def aclose(self) -> None:
        if self._thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join, 30)
        self._thread = None

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._connect() as db:
            return list(db.execute(sql, params))
