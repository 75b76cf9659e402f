"""The ledger: one row per request, in SQLite (WAL) or PostgreSQL.

`record()` appends the row to this process's spool file (gateway/spool.py): one `os.write` on the event
loop, ~1 µs. Once it returns, the row survives a `kill -9` of the gateway, so an answer can leave at
once: every request that got an answer has its row. A background thread moves spooled rows into the
database every `interval_s` (or on `flush()`) in one transaction per batch, so the database costs the
event loop nothing per request. At start the spool files of dead processes are ingested before
anything reads the ledger; `aclose()` ingests everything and removes this process's file.

Example::

    ledger = Ledger(Database("var/ledger.sqlite3")); ledger.start()
    ledger.record(LedgerRow(id="req-1", tenant="acme", ...))
    await ledger.aclose()
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import operator
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gateway import spool
from gateway.database import Database
from gateway.errors import LedgerUnavailable

log = logging.getLogger("gateway.ledger")

ROTATE_BYTES = 16 << 20  # a spool file is ingested and replaced past this size


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
    # What the caller saw in x-request-id; `id` is unique per row even when a caller reuses its ids.
    request_id: str | None = None


_COLUMNS = [f.name for f in dataclasses.fields(LedgerRow)]
_row_values = operator.attrgetter(*_COLUMNS)
_BOOL_COLUMNS = tuple(i for i, f in enumerate(dataclasses.fields(LedgerRow)) if f.type == "bool")
_INSERT = (
    f"INSERT INTO requests ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT (id) DO NOTHING"
)


def spool_dir_for(db: Database) -> Path:
    """Where a ledger's spool lives: beside a SQLite file; for PostgreSQL under GATEWAY_LEDGER_SPOOL (or
    var/ledger-spool), in a folder per database so two ledgers never ingest each other's rows."""
    if db.dialect == "sqlite":
        return Path(db.url + ".spool")
    base = Path(os.environ.get("GATEWAY_LEDGER_SPOOL") or "var/ledger-spool")
    return base / hashlib.sha256(db.url.encode()).hexdigest()[:16]


def encode(row: LedgerRow) -> bytes:
    values = list(_row_values(row))
    for i in _BOOL_COLUMNS:  # PostgreSQL's INTEGER columns take 0/1, not true/false
        values[i] = int(values[i])
    return orjson.dumps(values) + b"\n"


class Ledger:
    def __init__(
        self,
        db: Database,
        *,
        spool_dir: Path | None = None,
        interval_s: float = 0.2,
        rotate_bytes: int = ROTATE_BYTES,
    ) -> None:
        self.db = db
        self.spool_dir = spool_dir or spool_dir_for(db)
        self.interval_s = interval_s
        self.rotate_bytes = rotate_bytes
        self._spool: spool.SpoolFile | None = None
        self._sealed: list[spool.SpoolFile] = []
        self._offset = 0  # bytes of the current spool file already in the database
        self._lock = threading.Lock()  # appends and file swaps
        self._state = threading.Condition()
        self._recorded = 0
        self._ingested = 0
        self._failing = False  # the last spool write failed (a full disk): see writable()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._writer = _WriterConnection(db)

    def start(self) -> None:
        """Migrate, ingest what dead processes left in the spool, then start the ingesting thread."""
        self.db.migrate()
        spool.recover(self.spool_dir, self._writer.insert)
        self._spool = spool.SpoolFile.create(self.spool_dir)
        self._offset = 0
        self._thread = threading.Thread(target=self._run, name="ledger-ingest", daemon=True)
        self._thread.start()

    def record(self, row: LedgerRow) -> None:
        """Append the row to the spool; when this returns the row is safe from a crash of the process.

        Raises LedgerUnavailable when the row cannot be written (the spool keeps no part of it): the caller
        must not answer the request."""
        line = encode(row)
        with self._lock:
            current = self._spool
            if current is None:
                raise RuntimeError("the ledger is not started")
            try:
                current.append(line)
            except OSError as exc:
                if not self._failing:
                    self._failing = True
                    log.error("ledger: rows cannot be spooled to %s (%s)", current.path, exc.strerror or exc)
                raise LedgerUnavailable() from None
            if self._failing:
                self._failing = False
                log.warning("ledger: the spool can be written again")
            self._recorded += 1
            if current.size >= self.rotate_bytes:
                self._rotate(current)

    @property
    def failing(self) -> bool:
        """The last spool write failed, and no probe has succeeded since."""
        return self._failing

    @property
    def backlog(self) -> int:
        """Rows spooled by this process and not yet in the database."""
        return self._recorded - self._ingested

    def writable(self) -> bool:
        """False while the spool cannot be written, so requests are refused before any upstream call: a
        full disk must not turn every request into a paid call whose answer is withheld. While failing,
        each call probes with an empty line (the reader skips those); the first that succeeds ends it."""
        if not self._failing:
            return True
        with self._lock:
            current = self._spool
            if current is None:
                return False
            try:
                current.append(b"\n")
            except OSError:
                return False
            if self._failing:
                self._failing = False
                log.warning("ledger: the spool can be written again")
        return True

    def _rotate(self, current: spool.SpoolFile) -> None:
        # Under self._lock: later appends go to a new file; the thread ingests the old one to its end.
        try:
            self._spool = spool.SpoolFile.create(self.spool_dir)
        except OSError as exc:  # the row is spooled already: keep appending here, try again on the next row
            log.error("ledger: could not start a new spool file in %s (%s)", self.spool_dir, exc)
            return
        self._sealed.append(current)
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            stop = self._stop
            try:
                self._ingest()
            except Exception:  # the thread must survive anything; rows stay in the spool for the next pass
                log.exception("ledger: ingesting the spool failed; retrying")
                time.sleep(min(1.0, self.interval_s * 5))
            if stop:
                return

    def _ingest(self) -> None:
        """Move complete spooled rows into the database; sealed files first, then the current one."""
        with self._lock:
            sealed = list(self._sealed)
            current = self._spool
        for old in sealed:
            rows, _ = spool.read_rows(old.path, self._offset)
            self._insert(rows)
            old.close()
            old.path.unlink(missing_ok=True)
            with self._lock:
                self._sealed.remove(old)
            self._offset = 0
        if current is None:
            return
        rows, offset = spool.read_rows(current.path, self._offset)
        self._insert(rows)
        self._offset = offset  # only once the rows are in: a failed pass reads them again

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        # Another process (a report, a second worker) may hold the lock, or the server may be restarting:
        # retry those a few times, then raise so the rows stay in the spool for the next pass.
        for delay in (0.0, 0.05, 0.2, 1.0):
            time.sleep(delay)
            try:
                self._writer.insert(rows)
                break
            except Exception as exc:  # sqlite3 and psycopg errors alike
                if type(exc).__name__ not in ("OperationalError", "InterfaceError"):
                    log.error(
                        "ledger: %d rows could not be written (%s): %s", len(rows), exc, [r[0] for r in rows]
                    )
                    break  # not transient: retrying cannot help, and must not block the rows behind them
                log.warning("ledger write failed (%s), retrying", type(exc).__name__)
        else:
            raise RuntimeError(f"ledger database unavailable; {len(rows)} rows wait in the spool")
        with self._state:
            self._ingested += len(rows)
            self._state.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every row recorded so far is in the database (tests, reports, shutdown)."""
        target = self._recorded
        deadline = time.monotonic() + timeout
        with self._state:
            while self._ingested < target:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:
                    return False
                self._wake.set()
                self._state.wait(min(left, 0.05))
        return True

    async def aflush(self, wait_s: float = 10.0) -> bool:
        return await asyncio.to_thread(self.flush, wait_s)

    async def aclose(self) -> None:
        """Ingest everything, stop the thread, and remove this process's spool file once it is empty."""
        thread = self._thread
        if thread is None:
            return
        self._stop = True
        self._wake.set()
        await asyncio.to_thread(thread.join, 30)
        self._thread = None
        with self._lock:
            current, self._spool = self._spool, None
        if current is not None:
            current.close()
            if self._ingested >= self._recorded:
                current.path.unlink(missing_ok=True)
            else:  # the database was down: the next start recovers the rows from the file
                log.error("ledger: %d rows left in %s", self._recorded - self._ingested, current.path)
        self._writer.close()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.db.query(sql, params)


def recover_spool(db: Database) -> int:
    """Ingest the spool files of stopped or crashed gateways (for `gateway report` and tools)."""
    writer = _WriterConnection(db)
    try:
        return spool.recover(spool_dir_for(db), writer.insert)
    finally:
        writer.close()


class _WriterConnection:
    """The ingesting thread's SQLite connection, opened once and reused for every batch.

    Opening SQLite (and setting WAL) per batch cost about a fifth of a core under load (py-spy,
    bench/RESULTS.md). A failed write drops the connection, so the retry opens a fresh one. PostgreSQL
    keeps its connection per batch.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: sqlite3.Connection | None = None

    def insert(self, rows: list[tuple[Any, ...]]) -> None:
        width = len(_COLUMNS)
        if any(len(r) != width for r in rows):  # spooled by an older version: columns it did not have
            rows = [(r + (None,) * width)[:width] for r in rows]
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
