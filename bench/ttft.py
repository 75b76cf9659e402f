"""Time to first token of a stream: a small sequential client, one connection, in the harness process.

TTFT is measured from sending the request to receiving the first body bytes that hold a `data:` event;
the rest of the stream is then read in full so the connection can be reused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp

from bench.stats import percentile
from bench.targets import Endpoint


@dataclass
class TtftResult:
    samples: int
    errors: int
    p50_ms: float
    p99_ms: float


async def measure_ttft(endpoint: Endpoint, samples: int, warmup: int = 5) -> TtftResult:
    firsts: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        for i in range(warmup + samples):
            started = time.perf_counter()
            first: float | None = None
            try:
                async with session.post(endpoint.url, data=endpoint.body, headers=endpoint.headers) as resp:
                    seen = b""
                    async for piece in resp.content.iter_any():
                        if first is None:
                            seen += piece
                            if b"data:" in seen:
                                first = time.perf_counter() - started
                    ok = resp.status == 200 and first is not None
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if i < warmup:
                continue
            if ok and first is not None:
                firsts.append(first * 1000.0)
            else:
                errors += 1
    firsts.sort()
    return TtftResult(len(firsts), errors, percentile(firsts, 50), percentile(firsts, 99))
