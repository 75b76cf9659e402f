"""The fault matrix: every fault x every endpoint, with and without a healthy fallback.

Each cell builds the real app in-process against two fake vendors, each behind a FaultProxy:
`primary` (first candidate of every route) gets the fault, `backup` is healthy -- or, in the
"no healthy fallback" column, gets the same fault. The cell records what the client got, the attempts
the gateway made, and the time taken; `expected()` says what a correct gateway does:

* healthy fallback: 200 from the backup deployment within the per-attempt timeouts -- except a streamed
  chat broken *after* its first chunk, which is committed: it must end with the `stream_interrupted`
  error event and never `[DONE]`;
* no healthy fallback: one OpenAI-shaped error (`{"error": {message, type, param, code}}`, x-request-id).

    python -m tests.reliability.fault_matrix            # prints the table (about a minute)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from gateway.app import build_app
from gateway.policy_loader import parse_policy
from gateway.settings import Settings
from tests.fakes.fault_proxy import ConnFault, FaultProxy
from tests.fakes.openai_upstream import Fault
from tests.reliability.rel_support import SHAPE, FaultyOpenAI, matrix_policy, oversized, set_provider_keys

TIMEOUT_S = 0.6  # per attempt, in the matrix policy
RETRIES = 1
STALL_S = 3.0  # how long a stalled connection stays silent (longer than any attempt timeout)
HELLO = [{"role": "user", "content": "hello"}]


@dataclass
class Upstream:
    fake: FaultyOpenAI
    proxy: FaultProxy
    model_suffix: str  # "p" or "b": deployment models are p-chat, b-image, ...

    def model(self, endpoint: str) -> str:
        return f"{self.model_suffix}-{MODELS[endpoint]}"


MODELS = {"chat": "chat", "stream": "chat", "images": "image", "embeddings": "embed"}
ROUTES = {"chat": "chat", "stream": "chat", "images": "image", "embeddings": "embedding"}
PATHS = {
    "chat": "/v1/chat/completions",
    "stream": "/v1/chat/completions",
    "images": "/v1/images/generations",
    "embeddings": "/v1/embeddings",
}
ENDPOINTS = list(PATHS)

# Byte offset of "halfway" through each endpoint's healthy answer, as the proxy counts it (measured once).
_HALFWAY: dict[str, int] = {}

Apply = Callable[[Upstream, str], Awaitable[None]]


def _http(fault: Fault) -> Apply:
    async def apply(up: Upstream, endpoint: str) -> None:
        up.fake.always(up.model(endpoint), fault, times=20)

    return apply


def _conn(make: Callable[[str], ConnFault]) -> Apply:
    async def apply(up: Upstream, endpoint: str) -> None:
        up.proxy.default = make(endpoint)

    return apply


async def _refuse(up: Upstream, endpoint: str) -> None:
    await up.proxy.refuse()


async def _blackhole(up: Upstream, endpoint: str) -> None:
    await up.proxy.blackhole()


FAULTS: dict[str, Apply] = {
    "http_500": _http(Fault.http(500)),
    "http_502": _http(Fault.http(502)),
    "http_503": _http(Fault.http(503)),
    "http_429_retry_after": _http(Fault.http(429, "rate_limit_exceeded", retry_after="1")),
    "conn_refused": _refuse,
    "connect_timeout": _blackhole,
    "read_timeout": _http(Fault.hang(STALL_S)),
    "stall_halfway": _conn(lambda ep: ConnFault.stall_after(_HALFWAY[ep], STALL_S)),
    "reset_before_first_byte": _conn(lambda ep: ConnFault.reset_before_first_byte()),
    "reset_mid_body": _conn(lambda ep: ConnFault.reset_after(_HALFWAY[ep])),
    "malformed_json": _http(Fault.malformed()),
    "wrong_content_type": _http(Fault.html()),
    "http_404_model_not_found": _http(Fault.http(404, "model_not_found")),
    "http_401": _http(Fault.http(401, "invalid_api_key")),
    "oversized_body": _http(oversized(5)),  # > the 4 MiB request limit
}
SEQUENTIAL = {"oversized_body"}
# Faults that, on a stream, land after the first chunk reached the client (the answer is committed).
MID_STREAM = {"stall_halfway", "reset_mid_body"}
ERROR_CODES = {
    "upstream_unavailable",
    "upstream_timeout",
    "rate_limit_exceeded",
    "model_retired",
    "upstream_auth_failed",
    "no_eligible_deployment",
}


@dataclass
class Cell:
    fault: str
    endpoint: str
    fallback_healthy: bool
    status: int = 0
    outcome: str = ""  # "served:<deployment>", "interrupted:<deployment>", "error:<code>", "other:..."
    attempts: str = ""
    seconds: float = 0.0
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    primary_calls: int = 0
    backup_calls: int = 0
    ledger: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def max_seconds(self) -> float:
        per_attempt = TIMEOUT_S + 0.5 + 0.3  # the outer bound fallback puts on one call, plus slack
        deployments = 1 if self.fallback_healthy else 2
        return deployments * (RETRIES + 1) * per_attempt + 1.5


def request_body(endpoint: str) -> dict[str, Any]:
    route = ROUTES[endpoint]
    if endpoint == "chat":
        return {"model": route, "messages": HELLO}
    if endpoint == "stream":
        return {"model": route, "messages": HELLO, "stream": True}
    if endpoint == "images":
        return {"model": route, "prompt": "a lighthouse", "size": "256x256", "response_format": "b64_json"}
    return {"model": route, "input": ["hello", "world"]}


@contextlib.asynccontextmanager
async def upstreams() -> AsyncIterator[tuple[Upstream, Upstream]]:
    made: list[Upstream] = []
    try:
        for name, suffix in (("primary", "p"), ("backup", "b")):
            fake = FaultyOpenAI(name)
            await fake.start()
            proxy = FaultProxy.to_url(fake.base_url)
            await proxy.start()
            made.append(Upstream(fake, proxy, suffix))
        yield made[0], made[1]
    finally:
        for up in made:
            await up.proxy.stop()
            await up.fake.stop()


@contextlib.asynccontextmanager
async def gateway_for(
    primary: Upstream, backup: Upstream, tmp: Path, **policy_kw: object
) -> AsyncIterator[httpx.AsyncClient]:
    text = matrix_policy(
        primary.proxy.url(), backup.proxy.url(), timeout=TIMEOUT_S, retries=RETRIES, **policy_kw
    )
    app = build_app(
        Settings(policy_path=tmp / "unused.yaml", ledger_path=tmp / "ledger.sqlite3", watch_policy=False),
        policy=parse_policy(text, "matrix.yaml"),
    )
    tmp.mkdir(parents=True, exist_ok=True)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30) as http:
            http.app = app  # type: ignore[attr-defined]
            yield http


async def measure_halfway(tmp: Path) -> None:
    """How many bytes a healthy answer is, per endpoint, through the proxy; halfway is half of it."""
    if _HALFWAY:
        return
    for endpoint in ENDPOINTS:
        async with upstreams() as (primary, backup):
            async with gateway_for(primary, backup, tmp / f"halfway-{endpoint}") as http:
                resp = await http.post(PATHS[endpoint], json=request_body(endpoint))
                assert resp.status_code == 200, resp.text
            # The gateway closed its pool: every byte of the answer has been counted.
            total = sum(c.down_bytes for c in primary.proxy.connections)
            _HALFWAY[endpoint] = max(1, total // 2)


async def run_cell(fault: str, endpoint: str, fallback_healthy: bool, tmp: Path) -> Cell:
    await measure_halfway(tmp)
    cell = Cell(fault, endpoint, fallback_healthy)
    where = tmp / f"{fault}-{endpoint}-{'healthy' if fallback_healthy else 'faulty'}"
    async with upstreams() as (primary, backup):
        await FAULTS[fault](primary, endpoint)
        if not fallback_healthy:
            await FAULTS[fault](backup, endpoint)
        async with gateway_for(primary, backup, where) as http:
            t0 = time.perf_counter()
            resp = await http.post(PATHS[endpoint], json=request_body(endpoint))
            cell.seconds = time.perf_counter() - t0
            ledger = http.app.state.gateway.accounting.ledger  # type: ignore[attr-defined]
            await ledger.aflush()
            cell.ledger = ledger.query("SELECT id, status FROM requests")
        cell.status = resp.status_code
        cell.body = resp.content
        cell.headers = dict(resp.headers)
        cell.attempts = resp.headers.get("x-gateway-attempts", "")
        cell.primary_calls = primary.fake.calls()
        cell.backup_calls = backup.fake.calls()
        cell.outcome = classify(cell)
    return cell


def classify(cell: Cell) -> str:
    dep = cell.headers.get("x-gateway-deployment", "")
    if cell.status == 200:
        if cell.endpoint != "stream":
            return f"served:{dep}"
        text = cell.body.decode("utf-8", "replace")
        if "data: [DONE]" in text and '"stream_interrupted"' not in text:
            return f"served:{dep}"
        if '"stream_interrupted"' in text and "[DONE]" not in text:
            return f"interrupted:{dep}"
        return "other:stream without [DONE] or error event"
    try:
        error = orjson.loads(cell.body)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"other:not OpenAI-shaped ({cell.body[:80]!r})"
    if set(error) != SHAPE or not cell.headers.get("x-request-id"):
        return f"other:error without the OpenAI shape or x-request-id ({sorted(error)})"
    return f"error:{error['code']}"


def expected(cell: Cell) -> str | None:
    """None when the cell is right, else what is wrong."""
    if cell.seconds > cell.max_seconds:
        return f"took {cell.seconds:.2f}s > {cell.max_seconds:.2f}s"
    rid = cell.headers.get("x-request-id")
    if [r[0] for r in cell.ledger] != [rid]:
        return f"ledger rows {cell.ledger} for request {rid}: want exactly one"
    if cell.fallback_healthy:
        if cell.endpoint == "stream" and cell.fault in MID_STREAM:
            want = "interrupted:p-chat"
        else:
            want = f"served:b-{MODELS[cell.endpoint]}"
        return None if cell.outcome == want else f"got {cell.outcome!r}, want {want!r}"
    if cell.endpoint == "stream" and cell.fault in MID_STREAM:
        return None if cell.outcome.startswith("interrupted:") else f"got {cell.outcome!r}, want interrupted"
    if not cell.outcome.startswith("error:"):
        return f"got {cell.outcome!r}, want one OpenAI-shaped error"
    code = cell.outcome.split(":", 1)[1]
    return None if code in ERROR_CODES else f"unexpected error code {code!r}"


async def run_matrix(tmp: Path, concurrency: int = 1) -> list[Cell]:
    """Every cell; independent cells run `concurrency` at a time (each has its own fakes and app)."""
    await measure_halfway(tmp)
    gate = asyncio.Semaphore(concurrency)

    async def one(fault: str, endpoint: str, healthy: bool) -> Cell:
        async with gate:
            return await run_cell(fault, endpoint, healthy, tmp)

    keys = [(f, e, h) for h in (True, False) for f in FAULTS for e in ENDPOINTS]
    # Big bodies run alone afterwards, so their transfer time never races the attempt timeout.
    heavy = {k for k in keys if k[0] in SEQUENTIAL}
    done = dict(
        zip(
            [k for k in keys if k not in heavy],
            await asyncio.gather(*[one(*k) for k in keys if k not in heavy]),
            strict=True,
        )
    )
    for k in sorted(heavy, key=keys.index):
        done[k] = await run_cell(*k, tmp)
    return [done[k] for k in keys]


def table(cells: list[Cell]) -> str:
    lines = [
        "| fault | endpoint | fallback | status | outcome | attempts | upstream calls p/b | seconds | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        verdict = expected(c)
        lines.append(
            f"| {c.fault} | {c.endpoint} | {'healthy' if c.fallback_healthy else 'faulty'} | {c.status} | "
            f"{c.outcome} | {c.attempts or '-'} | {c.primary_calls}/{c.backup_calls} | {c.seconds:.3f} | "
            f"{'ok' if verdict is None else 'FAIL: ' + verdict} |"
        )
    bad = sum(1 for c in cells if expected(c) is not None)
    lines.append(f"\n{len(cells)} cells, {len(cells) - bad} ok, {bad} failing")
    return "\n".join(lines)


def main() -> int:
    os.environ.update(set_provider_keys())
    with tempfile.TemporaryDirectory() as tmp:
        cells = asyncio.run(run_matrix(Path(tmp), concurrency=int(os.environ.get("MATRIX_CONCURRENCY", "1"))))
    print(table(cells))
    return 0 if all(expected(c) is None for c in cells) else 1


if __name__ == "__main__":
    sys.exit(main())
