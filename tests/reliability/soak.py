"""Bounded loopback load against `gateway serve` in a subprocess, with vendor faults or a kill -9.

    python -m tests.reliability.soak                         # 200 clients, 20,000 requests, vendor killed
    python -m tests.reliability.soak --crash                 # same, and the gateway is kill -9'd mid-run
    python -m tests.reliability.soak --clients 50 --requests 2000

Three fake vendors: `flaky` answers 429 (Retry-After: 1) to 30% of its requests, `dying` is stopped at
30% of the run and started again at 60%, `steady` is always healthy; the chat route tries them in that
order. The mix is 80% chat, 10% streamed chat, 10% embeddings. Every client records the status, latency and
`x-request-id` it saw; afterwards the gateway is stopped cleanly and its SQLite ledger is compared with
those ids. With --crash the gateway is SIGKILLed at 50%, restarted on the same port and ledger, and the
run goes on; the report counts answered requests whose row was lost in the kill (the writer's window).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.fakes.openai_upstream import FakeOpenAI, Fault
from tests.reliability.rel_support import Served, percentile, start_gateway, stop_gateway

LOAD_POLICY = """
version: 1
providers:
  flaky:  {{kind: openai_compatible, base_url: "{flaky}", api_key_env: REL_PRIMARY_KEY, timeout_s: 2, connect_timeout_s: 0.5}}
  dying:  {{kind: openai_compatible, base_url: "{dying}", api_key_env: REL_BACKUP_KEY, timeout_s: 2, connect_timeout_s: 0.5}}
  steady: {{kind: openai_compatible, base_url: "{steady}", timeout_s: 2, connect_timeout_s: 0.5}}
deployments:
  flaky-chat:   {{provider: flaky, model: flaky-chat, modality: chat, openness: closed, data: {{location: vendor}}, price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
  dying-chat:   {{provider: dying, model: dying-chat, modality: chat, openness: closed, data: {{location: vendor}}, price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
  steady-chat:  {{provider: steady, model: steady-chat, modality: chat, openness: open, data: {{location: local}}, est_device_seconds: 0.01}}
  dying-embed:  {{provider: dying, model: dying-embed, modality: embedding, openness: closed, data: {{location: vendor}}, price: {{input_per_mtok: 0.1}}}}
  steady-embed: {{provider: steady, model: steady-embed, modality: embedding, openness: open, data: {{location: local}}, est_device_seconds: 0.01}}
routes:
  chat:      {{candidates: [flaky-chat, dying-chat, steady-chat], strategy: ordered}}
  embedding: {{candidates: [dying-embed, steady-embed], strategy: ordered}}
fallback:
  retries: 1
  backoff_ms: [5, 50]
  deadline_ms: 15000
  max_retry_after_ms: 200
  breaker: {{failure_ratio: 0.5, min_requests: 20, window_s: 5, open_s: 1}}
"""
HELLO = [{"role": "user", "content": "hello"}]


@dataclass
class Result:
    kind: str
    status: int  # 0: no answer (connection failed)
    seconds: float
    request_id: str | None
    ok: bool


@dataclass
class Report:
    clients: int
    requests: int
    crash: bool
    results: list[Result] = field(default_factory=list)
    wall_seconds: float = 0.0
    ledger_rows: int = 0
    ledger_distinct: int = 0
    missing: list[str] = field(default_factory=list)  # answered, no row
    extra: list[str] = field(default_factory=list)  # row, never answered (e.g. cut by the kill)
    integrity: str = ""
    incomplete_rows: int = 0
    killed_at: int | None = None
    vendor_events: list[str] = field(default_factory=list)

    @property
    def answered(self) -> list[Result]:
        return [r for r in self.results if r.status]

    @property
    def success_rate(self) -> float:
        return sum(r.ok for r in self.results) / max(1, len(self.results))

    def latency(self, q: float) -> float:
        return percentile([r.seconds for r in self.results if r.ok], q)

    def summary(self) -> dict[str, Any]:
        ok = sum(r.ok for r in self.results)
        return {
            "clients": self.clients,
            "requests": len(self.results),
            "ok": ok,
            "answered": len(self.answered),
            "success_rate": round(self.success_rate, 5),
            "statuses": _count(str(r.status) for r in self.results),
            "p50_ms": round(self.latency(0.50) * 1000, 1),
            "p99_ms": round(self.latency(0.99) * 1000, 1),
            "max_ms": round(self.latency(1.0) * 1000, 1),
            "throughput_rps": round(len(self.results) / max(self.wall_seconds, 1e-9), 1),
            "ledger_rows": self.ledger_rows,
            "ledger_distinct_ids": self.ledger_distinct,
            "answered_without_row": len(self.missing),
            "rows_never_answered": len(self.extra),
            "integrity_check": self.integrity,
            "incomplete_rows": self.incomplete_rows,
            "killed_at_request": self.killed_at,
            "vendor_events": self.vendor_events,
        }


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return dict(sorted(out.items()))


def _flaky_script(fake: FakeOpenAI, n: int) -> None:
    pattern = [
        Fault.http(429, "rate_limit_exceeded", retry_after="1") if i % 10 < 3 else Fault.ok()
        for i in range(n)
    ]
    fake.script("flaky-chat", *pattern)


async def _one(session: aiohttp.ClientSession, base: str, i: int) -> Result:
    kind = "stream" if i % 10 == 0 else "embeddings" if i % 10 == 5 else "chat"
    if kind == "embeddings":
        path, body = "/v1/embeddings", {"model": "embedding", "input": ["hello", "world"]}
    else:
        path, body = "/v1/chat/completions", {"model": "chat", "messages": HELLO, "stream": kind == "stream"}
    t0 = time.perf_counter()
    try:
        async with session.post(base + path, json=body) as resp:
            raw = await resp.read()
            ok = resp.status == 200 and (kind != "stream" or raw.rstrip().endswith(b"data: [DONE]"))
            return Result(kind, resp.status, time.perf_counter() - t0, resp.headers.get("x-request-id"), ok)
    except (aiohttp.ClientError, TimeoutError):
        return Result(kind, 0, time.perf_counter() - t0, None, False)


async def _start_fakes(tmp: Path, requests: int) -> tuple[dict[str, FakeOpenAI], Path]:
    fakes = {name: FakeOpenAI(name) for name in ("flaky", "dying", "steady")}
    for fake in fakes.values():
        await fake.start()
    _flaky_script(fakes["flaky"], requests * 2)
    policy = tmp / "load-policy.yaml"
    policy.write_text(LOAD_POLICY.format(**{n: f.base_url for n, f in fakes.items()}))
    return fakes, policy


async def run_load(tmp: Path, clients: int, requests: int, *, crash: bool = False) -> Report:
    report = Report(clients, requests, crash)
    fakes, policy = await _start_fakes(tmp, requests)
    dying_port = int(fakes["dying"].base_url.rsplit(":", 1)[1].split("/")[0])
    ledger = tmp / "load-ledger.sqlite3"
    log = tmp / "load-gateway.log"
    served: Served = await start_gateway(policy, ledger, log)
    base = served.base
    next_i = 0
    sent = 0
    stage = {"killed_vendor": False, "restarted_vendor": False, "crashed": False}
    results: list[Result] = []
    t_start = time.perf_counter()
    restart_lock = asyncio.Lock()

    async def control(done: int) -> None:
        nonlocal served
        if not stage["killed_vendor"] and done >= 0.3 * requests:
            stage["killed_vendor"] = True
            await fakes["dying"].stop()
            report.vendor_events.append(f"dying vendor stopped at request {done}")
        if not stage["restarted_vendor"] and done >= 0.6 * requests:
            stage["restarted_vendor"] = True
            await fakes["dying"].start(port=dying_port)
            report.vendor_events.append(f"dying vendor restarted at request {done}")
        if crash and not stage["crashed"] and done >= 0.5 * requests:
            stage["crashed"] = True
            async with restart_lock:
                report.killed_at = done
                await stop_gateway(served, hard=True)
                served = await start_gateway(policy, ledger, log, port=served.port)

    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def client() -> None:
            nonlocal next_i, sent
            while next_i < requests:
                i = next_i
                next_i += 1
                async with restart_lock:
                    pass  # hold new requests while the gateway restarts
                result = await _one(session, base, i)
                results.append(result)
                sent += 1
                await control(sent)

        await asyncio.gather(*[client() for _ in range(clients)])
    report.wall_seconds = time.perf_counter() - t_start
    report.results = results
    await stop_gateway(served)  # clean stop: everything still queued is flushed
    for fake in fakes.values():
        with contextlib.suppress(Exception):
            await fake.stop()
    check_ledger(report, ledger)
    return report


REQUIRED = ("id", "ts", "tenant", "route", "modality", "attempts", "status", "latency_ms", "cost_usd")


def check_ledger(report: Report, ledger: Path) -> None:
    with contextlib.closing(sqlite3.connect(ledger)) as db:
        report.integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        report.ledger_rows = db.execute("SELECT count(*) FROM requests").fetchone()[0]
        report.ledger_distinct = db.execute("SELECT count(DISTINCT id) FROM requests").fetchone()[0]
        nulls = " OR ".join(f"{c} IS NULL" for c in REQUIRED)
        report.incomplete_rows = db.execute(
            f"SELECT count(*) FROM requests WHERE {nulls} OR status NOT BETWEEN 100 AND 599 "
            "OR latency_ms < 0 OR cost_usd < 0 OR (status = 200 AND deployment IS NULL)"
        ).fetchone()[0]
        ids = {r[0] for r in db.execute("SELECT id FROM requests")}
    answered = {r.request_id for r in report.answered if r.request_id}
    report.missing = sorted(answered - ids)
    report.extra = sorted(ids - answered)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.soak")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--crash", action="store_true", help="kill -9 the gateway at 50%% and restart it")
    parser.add_argument("--repeat", type=int, default=1, help="runs (for the crash loss figure)")
    args = parser.parse_args(argv)
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            report = asyncio.run(run_load(Path(tmp), args.clients, args.requests, crash=args.crash))
        print(json.dumps(report.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
