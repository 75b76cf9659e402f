"""Drive load at a target: wrk (with a Lua script for the POST) when installed, else bench/loadgen.py.

Either way the generator is a separate process, so it does not share an interpreter with anything
measured; on this 2-core machine it does share the CPUs, which is why wrk (C, one thread) is preferred.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import orjson

from bench.stats import LoadResult
from bench.targets import REPO_ROOT, Endpoint

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _lua_long_string(text: str) -> str:
    level = "=" * 4
    assert f"]{level}]" not in text
    return f"[{level}[{text}]{level}]"


def _wrk_script(endpoint: Endpoint, work: Path) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_long_string(endpoint.body.decode())}"]
    lines += [
        # The spaces matter: "[[" would open a Lua long string.
        f"wrk.headers[ {_lua_long_string(k)} ] = {_lua_long_string(v)}"
        for k, v in endpoint.headers.items()
    ]
    script = work / f"wrk-{abs(hash((endpoint.url, endpoint.body, tuple(endpoint.headers.items()))))}.lua"
    script.write_text("\n".join(lines) + "\n")
    return script


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value.strip()).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS_MS[unit]


def parse_wrk(output: str, connections: int) -> LoadResult:
    """Read rps, percentiles and errors from `wrk --latency` output."""
    pct = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)\s*$", output, re.MULTILINE))  # wrk pads seconds
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not (pct and done and rps):
        raise RuntimeError(f"cannot read wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, sockets.groups())) if sockets else 0)
    return LoadResult(
        tool="wrk",
        connections=connections,
        requests=int(done.group(1)),
        errors=errors,
        seconds=_ms(done.group(2) + done.group(3)) / 1000.0,
        rps=float(rps.group(1)),
        p50_ms=_ms(pct["50"]),
        p90_ms=_ms(pct["90"]),
        p99_ms=_ms(pct["99"]),
    )


def run_wrk(endpoint: Endpoint, connections: int, duration_s: float, work: Path) -> LoadResult:
    script = _wrk_script(endpoint, work)
    seconds = max(1, round(duration_s))
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        endpoint.url,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 60)
    if out.stderr.strip():  # a Lua error makes wrk send GETs without a body and still "succeed"
        raise RuntimeError(f"wrk complained: {out.stderr.strip()}")
    return parse_wrk(out.stdout, connections)


def run_python(
    endpoint: Endpoint,
    connections: int,
    work: Path,
    *,
    duration_s: float | None = None,
    requests: int | None = None,
) -> LoadResult:
    body_file = work / f"body-{abs(hash(endpoint.body))}.json"
    body_file.write_bytes(endpoint.body)
    argv = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--url",
        endpoint.url,
        "--body-file",
        str(body_file),
        "--connections",
        str(connections),
    ]
    argv += [f"-H{k}:{v}" for k, v in endpoint.headers.items()]
    argv += ["--duration", str(duration_s)] if duration_s is not None else ["--requests", str(requests)]
    limit = (duration_s or 0) + 60 + (requests or 0) / 200
    out = subprocess.run(argv, capture_output=True, check=True, cwd=REPO_ROOT, timeout=limit)
    return LoadResult(**orjson.loads(out.stdout))


def run_load(
    endpoint: Endpoint, connections: int, duration_s: float, work: Path, *, use_wrk: bool
) -> LoadResult:
    if use_wrk:
        return run_wrk(endpoint, connections, duration_s, work)
    return run_python(endpoint, connections, work, duration_s=duration_s)
