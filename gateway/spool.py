"""The ledger spool: an append-only file of ledger rows, one per gateway process, written on the hot path.

Why: the answer to a request must not leave before its ledger row is safe, and committing a database
transaction per answer cost the event loop about half its throughput (a thread hop, a future, a commit
and GIL contention with the writer; bench/RESULTS.md). One `os.write` of a JSON line costs ~1 µs, and
bytes the kernel has accepted survive a `kill -9` of the process as well as a WAL commit does. A
background thread moves spooled rows into the database in large batches (gateway/ledger.py).

Files: `<dir>/<pid>-<ns>.rows`, each held under an exclusive `flock` by its writer while it lives. A
file whose lock can be taken belongs to a dead process: `recover()` ingests it and deletes it (rows are
inserted with ON CONFLICT DO NOTHING, so ingesting a file twice is harmless). A writer starts a new
file past `rotate_bytes`; the old one is "sealed", ingested to its end and deleted by the writer thread.

Example::

    spool = SpoolFile.create(Path("var/ledger.sqlite3.spool"))
    spool.append(b'["req_1", 1735689600.0, ...]\\n')
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("gateway.ledger")

SUFFIX = ".rows"


class SpoolFile:
    """One process's current spool file: `append` is called on the event loop, once per ledger row."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.size = 0
        self.torn = False  # a failed write left part of a line that could not be cut off

    @classmethod
    def create(cls, directory: Path) -> SpoolFile:
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{time.time_ns()}"
        # Created under another name and locked before it gets its real one, so another process's
        # recover() can never take a brand-new file for the spool of a dead process.
        hidden, path = directory / f".{name}.new", directory / f"{name}{SUFFIX}"
        fd = os.open(hidden, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # "alive": recover() elsewhere skips it
            os.rename(hidden, path)
        except BaseException:
            os.close(fd)
            hidden.unlink(missing_ok=True)
            raise
        return cls(path, fd)

    def append(self, line: bytes) -> None:
        """Write one whole line, or raise OSError and leave no part of it behind.

        A full disk (or a file size limit) cuts a write short and fails the next one: the part written is
        cut off again, so the next row starts a line of its own instead of being glued to half a row."""
        if self.torn:
            line = b"\n" + line  # end the broken line: the reader skips it as not JSON
        view = memoryview(line)
        try:
            while view:  # a regular file takes the whole line in one call; loop for the short write
                written = os.write(self.fd, view)
                view = view[written:]
        except OSError:
            try:
                os.ftruncate(self.fd, self.size)
                self.torn = False
            except OSError:
                self.torn = True
                with contextlib.suppress(OSError):
                    self.size = os.fstat(self.fd).st_size
            raise
        self.torn = False
        self.size += len(line)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def read_rows(path: Path, offset: int) -> tuple[list[tuple[Any, ...]], int]:
    """The complete rows of `path` after byte `offset`, and the offset just past the last complete one.

    A line without its newline is still being written (or was cut by a full disk): it is left for later.
    A line that is not a JSON array is logged and skipped, so one bad line cannot block the ledger.
    """
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    rows: list[tuple[Any, ...]] = []
    for line in data[:end].split(b"\n"):
        if not line:
            continue
        try:
            values = orjson.loads(line)
        except orjson.JSONDecodeError:
            values = None
        if isinstance(values, list):
            rows.append(tuple(values))
        else:
            log.error("ledger spool %s: skipped a line that is not a row: %r", path.name, line[:120])
    return rows, offset + end


def orphans(directory: Path, *, skip: Path | None = None) -> Iterator[tuple[Path, int]]:
    """Spool files whose writer is gone, each with an fd holding its lock (close it when done)."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        if path == skip:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # another process recovered it a moment ago
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # its writer is alive (another worker): that worker ingests it
            continue
        yield path, fd


def recover(
    directory: Path, insert: Callable[[list[tuple[Any, ...]]], None], *, skip: Path | None = None
) -> int:
    """Ingest and delete the spool files of dead processes; return the rows inserted.

    Run at start, before budgets are seeded from the ledger, and by `gateway report`, so rows answered
    just before a crash are counted. A file that fails to insert stays for the next attempt.
    """
    total = 0
    for path, fd in orphans(directory, skip=skip):
        try:
            rows, _ = read_rows(path, 0)
            for start in range(0, len(rows), 5000):
                insert(rows[start : start + 5000])
            path.unlink(missing_ok=True)
            total += len(rows)
            if rows:
                log.info("ledger: recovered %d rows from %s", len(rows), path.name)
        finally:
            os.close(fd)
    return total
