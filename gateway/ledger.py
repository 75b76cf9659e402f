"""The ledger: one row per request, in SQLite (WAL) or PostgreSQL, written by a background thread.

`record()` only puts the row on a queue, so the event loop never blocks on the disk. The writer commits
in small batches as soon as rows arrive (group commit) and then resolves each row's `committed` future.
The gateway awaits that future before it sends a successful answer, so an answer a client received has
its row even after a `kill -9` (WAL with synchronous=NORMAL survives a process crash); error answers are
not held back. `aclose()` flushes everything on a clean stop.

Example::

    ledger = Ledger(Database("var/ledger.sqlite3")); ledger.start()
    ledger.record(LedgerRow(id="req-1", tenant="acme", ...))
    await ledger.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import operator
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.database import Database

log = logging.getLogger("gateway.ledger")

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
    key_id: str | None = None


_COLUMNS = [f.name for f in dataclasses.fields(LedgerRow)]
_row_values = operator.attrgetter(*_COLUMNS)
_INSERT = (
    f"INSERT INTO requests ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT (id) DO NOTHING"
)


class Ledger:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: queue.SimpleQueue[tuple[LedgerRow, asyncio.Future[None] | None] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._written = 0
        self._idle = threading.Condition()
        self._pending = 0
        self._writer = _WriterConnection(db)

    def start(self) -> None:
        self.db.migrate()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def record(self, row: LedgerRow) -> asyncio.Future[None] | None:
        """Queue the row; inside an event loop, return a future resolved once the row is committed."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        committed = loop.create_future() if loop is not None else None
        with self._idle:
            self._pending += 1
        self._queue.put((row, committed))
        return committed

    def _run(self) -> None:
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
                self._write(batch)
                if stop:
                    return
        finally:
            self._writer.close()

    def _write(self, queued: list[tuple[LedgerRow, asyncio.Future[None] | None]]) -> None:
        batch = [row for row, _ in queued]
        # attrgetter, not dataclasses.astuple: astuple deep-copies every value (~2% of a core under load).
        rows = [tuple(int(v) if isinstance(v, bool) else v for v in _row_values(r)) for r in batch]
        # Another process (a report, a second worker) may hold the lock, or the server may be restarting:
        # retry those; any other error is a bug and is logged at once with the ids of the rows it cost.
        for delay in (0.0, 0.05, 0.2, 1.0, 2.0, 5.0):
            time.sleep(delay)
            try:
                self._writer.insert(rows)
                break
            except Exception as exc:  # sqlite3 and psycopg errors alike must not kill the writer thread
                if type(exc).__name__ not in ("OperationalError", "InterfaceError"):
                    log.error(
                        "ledger: %d rows could not be written (%s): %s", len(rows), exc, [r.id for r in batch]
                    )
                    break
                log.warning("ledger write failed (%s), retrying", type(exc).__name__)
        else:
            log.error("ledger: %d rows could not be written: %s", len(rows), [r.id for r in batch])
        with self._idle:
            self._pending -= len(batch)
            self._written += len(batch)
            self._idle.notify_all()
        for _, committed in queued:  # resolved even when the write failed: the answer must not hang
            if committed is not None:
                _resolve(committed)

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
        return self.db.query(sql, params)


class _WriterConnection:
    """The writer thread's SQLite connection, opened once and reused for every batch.

    Under load batches hold a few rows each, and opening SQLite (and setting WAL) per batch cost about a
    fifth of a core at 16 concurrent requests (py-spy, bench/RESULTS.md). A failed write drops the
    connection, so the retry opens a fresh one. PostgreSQL keeps its connection per batch.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: sqlite3.Connection | None = None

    def insert(self, rows: list[tuple[Any, ...]]) -> None:
        if self.db.dialect != "sqlite":
            with self.db.connect() as conn:
                self.db.executemany(conn, _INSERT, rows)
            return
        if self._conn is None:
            self._conn = self._open()
        try:
            with self._conn:  # one transaction per batch
                self._conn.executemany(_INSERT, rows)
        except Exception:
            self.close()
            raise

    def _open(self) -> sqlite3.Connection:
        # The settings of Database.connect(), on a connection that stays open.
        Path(self.db.url).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.db.url, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _resolve(committed: asyncio.Future[None]) -> None:
    loop = committed.get_loop()
    if loop.is_closed():
        return
    with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
        loop.call_soon_threadsafe(_set_done, committed)


def _set_done(committed: asyncio.Future[None]) -> None:
    if not committed.done():
        committed.set_result(None)
