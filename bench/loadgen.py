"""The Python load generator, for machines without wrk; runs in its own process.

    python -m bench.loadgen --url URL --body-file F [-H name:value] --connections 16 --duration 10
    python -m bench.loadgen ... --requests 100000      # a fixed count instead (the soak mode)

Keeps `connections` keep-alive connections busy, each sending its next request as soon as the previous
answer is read in full, and prints one JSON LoadResult. About 3-5x slower than wrk per core, so at high
rates it measures itself as much as the target; the table names the tool that ran.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from pathlib import Path

import aiohttp
import orjson

from bench.stats import LoadResult, percentile


async def run_load(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    connections: int,
    duration_s: float | None,
    total_requests: int | None,
) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    sent = 0
    stop_at = time.perf_counter() + duration_s if duration_s is not None else float("inf")

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors, sent
        while time.perf_counter() < stop_at and (total_requests is None or sent < total_requests):
            sent += 1
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    ok = resp.status < 400
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            latencies.append((time.perf_counter() - started) * 1000.0)
            errors += not ok

    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, skip_auto_headers=["user-agent"]
    ) as session:
        began = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        seconds = time.perf_counter() - began
    latencies.sort()
    return LoadResult(
        tool="python",
        connections=connections,
        requests=len(latencies),
        errors=errors,
        seconds=seconds,
        rps=len(latencies) / seconds if seconds > 0 else 0.0,
        p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90),
        p99_ms=percentile(latencies, 99),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", required=True, type=Path)
    parser.add_argument("-H", "--header", action="append", default=[], help="name:value")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument("--requests", type=int, default=None)
    args = parser.parse_args()
    if (args.duration is None) == (args.requests is None):
        parser.error("give exactly one of --duration and --requests")
    headers = dict(h.split(":", 1) for h in args.header)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # uvloop only makes the generator faster
        pass
    result = asyncio.run(
        run_load(
            args.url,
            args.body_file.read_bytes(),
            headers,
            connections=args.connections,
            duration_s=args.duration,
            total_requests=args.requests,
        )
    )
    sys.stdout.buffer.write(orjson.dumps(dataclasses.asdict(result)) + b"\n")


if __name__ == "__main__":
    main()
