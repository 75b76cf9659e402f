"""`python -m bench`: start the fake upstream and the targets, drive load, print the tables.

python -m bench                                  # all five targets, 1/16/64 connections, 10 s each
python -m bench --only a,b,e --connections 1,16 --duration 5 --repeat 3
python -m bench --smoke                          # seconds; Python tools only; what CI runs
python -m bench --soak 100000                    # RSS of the gateway over N requests
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import aiohttp

from bench import targets as t
from bench.load import run_load, run_python, wrk_available
from bench.procs import Server
from bench.report import RunResults, render
from bench.stats import LoadResult, median_result
from bench.ttft import measure_ttft
from bench.upstream import nginx_available, start_upstream

ALL_TARGETS = "a,b,c,d,e,f"


def _log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="tiny counts, (a)(b)(e)(f), Python load generator, aiohttp upstream",
    )
    p.add_argument("--only", default=None, help=f"targets to run, from {ALL_TARGETS}")
    p.add_argument("--connections", default=None, help="concurrency levels, e.g. 1,16,64")
    p.add_argument("--duration", type=float, default=None, help="seconds of load per cell")
    p.add_argument("--repeat", type=int, default=1, help="runs per cell; the table shows medians")
    p.add_argument("--ttft-samples", type=int, default=None, help="sequential streamed requests per target")
    p.add_argument(
        "--python-load", action="store_true", help="use the Python load generator even if wrk exists"
    )
    p.add_argument(
        "--aiohttp-upstream", action="store_true", help="use the aiohttp fake upstream even if nginx exists"
    )
    p.add_argument(
        "--soak", type=int, default=None, metavar="N", help="send N requests to the gateway, report RSS"
    )
    p.add_argument("--output", type=Path, default=None, help="also write the markdown report to this file")
    p.add_argument("--keep-work", action="store_true", help="keep the work directory (configs, server logs)")
    args = p.parse_args(argv)
    if args.smoke:
        args.only = args.only or "a,b,e,f"
        args.connections = args.connections or "1,4"
        args.duration = args.duration or 0.5
        args.ttft_samples = args.ttft_samples or 5
        args.python_load = args.aiohttp_upstream = True
    args.only = [k.strip() for k in (args.only or ALL_TARGETS).split(",") if k.strip()]
    args.connections = [int(c) for c in (args.connections or "1,16,64").split(",")]
    args.duration = args.duration or 10.0
    args.ttft_samples = args.ttft_samples or 200
    return args


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


def start_targets(keys: list[str], upstream: Server, work: Path, notes: list[str]) -> list[t.Target]:
    started: list[t.Target] = []
    builders: dict[str, Callable[[], t.Target | None]] = {
        "a": lambda: t.direct(upstream),
        "b": lambda: t.passthrough(upstream, work),
        "c": lambda: _optional(
            "LiteLLM", t.ensure_litellm, lambda exe: t.litellm(upstream, work, exe), notes
        ),
        "d": lambda: _optional(
            "Portkey", t.ensure_portkey, lambda entry: t.portkey(upstream, work, entry), notes
        ),
        "e": lambda: t.gateway(upstream, work),
        "f": lambda: t.passthrough(upstream, work, client="http1"),
    }
    for key in keys:
        _log(f"starting ({key})")
        target = builders[key]()
        if target is not None:
            started.append(target)
    return started


def _optional(
    name: str,
    ensure: Callable[[Callable[[str], None]], Path | None],
    build: Callable[[Path], t.Target],
    notes: list[str],
) -> t.Target | None:
    installed = ensure(_log)
    if installed is None:
        notes.append(f"{name} was skipped: it could not be installed here")
        return None
    try:
        return build(installed)
    except RuntimeError as exc:
        notes.append(f"{name} was skipped: {exc}")
        return None


async def _answers(endpoint: t.Endpoint) -> str | None:
    """None when the endpoint answers 200 with a body, else what went wrong (a failing target is not timed)."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.post(endpoint.url, data=endpoint.body, headers=endpoint.headers) as resp:
                body = await resp.read()
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"
    return None if resp.status == 200 and body else f"HTTP {resp.status}: {body[:200]!r}"


def compare(args: argparse.Namespace, work: Path) -> RunResults:
    use_wrk = wrk_available() and not args.python_load
    upstream = start_upstream(work, prefer_nginx=not args.aiohttp_upstream)
    notes = [
        f"machine: {machine()}; date {dt.date.today().isoformat()}",
        f"fake upstream: {upstream.name}; load generator: {'wrk (1 thread)' if use_wrk else 'Python (aiohttp)'}; "
        f"{args.duration:g} s per cell, {args.repeat} repeat(s), cells interleaved across targets",
        "overhead = the target's percentile minus the direct-to-upstream percentile at the same concurrency",
    ]
    targets: list[t.Target] = []
    try:
        targets = start_targets(args.only, upstream, work, notes)
        streams_ok: set[str] = set()
        for tg in list(targets):
            plain_error = asyncio.run(_answers(tg.plain))
            if plain_error is not None:
                notes.append(f"({tg.key}) {tg.label} was skipped: a plain request failed ({plain_error})")
                tg.stop()
                targets.remove(tg)
                continue
            stream_error = asyncio.run(_answers(tg.stream))
            if stream_error is None:
                streams_ok.add(tg.key)
            else:
                notes.append(f"({tg.key}) {tg.label}: no TTFT, a streamed request failed ({stream_error})")
            run_load(tg.plain, 4, min(2.0, args.duration), work, use_wrk=use_wrk)  # warm-up, not recorded
        res = RunResults({tg.key: tg.label for tg in targets}, notes=notes)
        runs: dict[tuple[str, int], list[LoadResult]] = {}
        for conns in args.connections:
            for rep in range(args.repeat):
                for tg in targets:
                    _log(f"load ({tg.key}) {conns} connection(s), run {rep + 1}/{args.repeat}")
                    runs.setdefault((tg.key, conns), []).append(
                        run_load(tg.plain, conns, args.duration, work, use_wrk=use_wrk)
                    )
        res.load = {cell: median_result(rs) for cell, rs in runs.items()}
        for tg in (tg for tg in targets if tg.key in streams_ok):
            _log(f"ttft ({tg.key})")
            res.ttft[tg.key] = asyncio.run(measure_ttft(tg.stream, args.ttft_samples))
        for tg in targets:
            server = tg.server or upstream
            res.peak_rss_mb[tg.key] = server.rss_mb("VmHWM")
        return res
    finally:
        for tg in targets:
            tg.stop()
        upstream.stop()


def soak(args: argparse.Namespace, work: Path) -> str:
    """RSS of the gateway (resident now, not peak) before and after N requests at 16 connections."""
    upstream = start_upstream(work, prefer_nginx=not args.aiohttp_upstream)
    target = t.gateway(upstream, work)
    assert target.server is not None
    try:
        run_python(target.plain, 16, work, requests=2000)  # warm-up: imports, pools, caches
        start = target.server.rss_mb("VmRSS")
        samples = [start]
        steps = 10
        done = 0
        for i in range(steps):
            n = args.soak // steps + (1 if i < args.soak % steps else 0)
            result = run_python(target.plain, 16, work, requests=n)
            done += result.requests
            samples.append(target.server.rss_mb("VmRSS"))
            _log(
                f"soak {done}/{args.soak}: RSS {samples[-1]:.1f} MB, {result.rps:.0f} req/s, {result.errors} errors"
            )
        end = samples[-1]
        growth = 100.0 * (end - start) / start if start else 0.0
        verdict = "MET" if growth < 10.0 else "NOT MET"
        return (
            f"### Soak: {done} requests to (e) at 16 connections (Python load generator, {upstream.name} upstream)\n"
            f"- RSS after warm-up {start:.1f} MB, after the soak {end:.1f} MB: {growth:+.1f}% ({verdict}: < 10%)\n"
            f"- RSS samples every {args.soak // steps} requests (MB): {', '.join(f'{s:.1f}' for s in samples)}\n"
            f"- machine: {machine()}; date {dt.date.today().isoformat()}\n"
        )
    finally:
        target.stop()
        upstream.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        if args.soak:
            text = soak(args, work)
        else:
            if not args.python_load and not wrk_available():
                _log("wrk not found: using the Python load generator")
            if not args.aiohttp_upstream and not nginx_available():
                _log("nginx not found: using the aiohttp fake upstream")
            text = render(compare(args, work), args.connections)
    finally:
        if args.keep_work:
            _log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(text)
    if args.output:
        args.output.write_text(text)
    return 0
