"""The ledger's spool: rows are safe once `record()` returns, and reach the database without the event loop.

A killed process is a real subprocess killed with SIGKILL; the database is read with sqlite3 directly.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson

from gateway.database import Database
from gateway.ledger import Ledger, LedgerRow, recover_spool
from tests.conftest import Harness

REPO = Path(__file__).resolve().parents[2]


def _row(i: int, **changes: object) -> LedgerRow:
    fields: dict[str, object] = dict(
        id=f"req_{i:032x}", ts=1_735_689_600.0 + i, tenant="acme", route="chat", modality="chat",
        deployment="closed-best", provider="vendor", openness="closed", attempts=1, fallbacks=0,
        prompt_tokens=11, completion_tokens=5, images=0, device_seconds=0.0, cost_usd=0.000108,
        cost_estimated=False, latency_ms=3.5, status=200, error_code=None, stream=False,
    )  # fmt: skip
    fields.update(changes)
    return LedgerRow(**fields)  # type: ignore[arg-type]


def _count(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT count(*) FROM requests").fetchone()[0])


def test_rows_of_a_killed_process_are_ingested_by_the_next_start(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite3"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from gateway.database import Database
        from gateway.ledger import Ledger
        from tests.gateway.test_ledger_spool import _row
        ledger = Ledger(Database({str(db)!r}), interval_s=3600)  # never ingests by itself
        ledger.start()
        for i in range(500):
            ledger.record(_row(i))
        print("recorded", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.strip() == "recorded"
    assert _count(db) == 0  # nothing reached the database before the kill
    assert len(list((tmp_path / "ledger.sqlite3.spool").glob("*.rows"))) == 1

    assert recover_spool(Database(db)) == 500  # what `gateway report` does first
    assert _count(db) == 500
    assert not list((tmp_path / "ledger.sqlite3.spool").glob("*.rows"))


async def test_a_live_writers_spool_is_left_to_it_and_rotation_loses_nothing(tmp_path: Path) -> None:
    db = Database(tmp_path / "ledger.sqlite3")
    ledger = Ledger(db, interval_s=0.05, rotate_bytes=4_000)  # a new file every ~10 rows
    ledger.start()
    try:
        for i in range(300):
            ledger.record(_row(i, cost_estimated=True, stream=i % 2 == 0))
        assert recover_spool(db) == 0  # the file is locked by a live writer: not an orphan
        assert await ledger.aflush(10)
        assert _count(tmp_path / "ledger.sqlite3") == 300
        files = list(ledger.spool_dir.glob("*.rows"))
        assert len(files) <= 2  # sealed files are deleted once ingested
    finally:
        await ledger.aclose()
    assert not list(ledger.spool_dir.glob("*.rows"))  # a clean stop leaves no spool
    flags = db.query("SELECT count(*), sum(cost_estimated), sum(stream) FROM requests")
    assert flags == [(300, 300, 150)]  # booleans stored as 0/1 (PostgreSQL's INTEGER columns need that)


def test_rows_spooled_by_an_older_version_are_ingested(tmp_path: Path) -> None:
    db = Database(tmp_path / "ledger.sqlite3")
    db.migrate()
    spool = tmp_path / "ledger.sqlite3.spool"
    spool.mkdir()
    old = [getattr(_row(1), f) for f in LedgerRow.__slots__][:-1]  # before the request_id column
    (spool / "1-1.rows").write_bytes(orjson.dumps(old) + b"\n" + b'["torn line without its end')
    assert recover_spool(db) == 1
    assert db.query("SELECT id, request_id FROM requests") == [(old[0], None)]


async def test_a_reused_client_request_id_still_gets_a_row_per_request(hybrid: Harness) -> None:
    for _ in range(2):
        raw = await hybrid.client.chat.completions.with_raw_response.create(
            model="chat",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-request-id": "trace-7"},
        )
        assert raw.headers["x-request-id"] == "trace-7"
    rows = await hybrid.ledger_rows()
    assert [r["request_id"] for r in rows] == ["trace-7", "trace-7"]
    assert len({r["id"] for r in rows}) == 2


async def test_the_spool_is_written_before_the_answer_leaves(hybrid: Harness) -> None:
    await hybrid.client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    ledger = hybrid.gateway.accounting.ledger
    spooled = b"".join(p.read_bytes() for p in ledger.spool_dir.glob("*.rows"))
    assert spooled.count(b"\n") == 1 and b'"closed-best"' in spooled  # on disk already, before any flush
