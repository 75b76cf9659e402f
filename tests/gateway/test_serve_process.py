"""`gateway serve` as a real process over loopback: streaming, SIGHUP reload, several workers, clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import hybrid_policy_text
from tests.fakes.openai_upstream import FakeOpenAI, Fault
from tests.processes import free_port, serve_command

pytestmark = pytest.mark.slow
HELLO = [{"role": "user", "content": "hello"}]


@contextlib.asynccontextmanager
async def serve(
    policy: Path, tmp: Path, *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    cmd = serve_command(policy, port, tmp / "ledger.sqlite3", *args)
    log = tmp / f"serve-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(150):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(base + "/healthz")).status_code == 200:
                        break
                assert proc.poll() is None, log.read_text()
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("gateway did not start in 15 s")
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 20)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait, 5)


def policy_file(tmp: Path, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI) -> Path:
    path = tmp / "policy.yaml"
    path.write_text(
        hybrid_policy_text(vendor=vendor.base_url, vendor2=vendor2.base_url, local=local.base_url)
    )
    return path


async def test_stream_over_loopback_sighup_reload_and_clean_stop(
    tmp_path: Path, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    path = policy_file(tmp_path, vendor, vendor2, local)
    async with serve(path, tmp_path, env={"GATEWAY_WATCH_POLICY": "0"}) as (base, proc):
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="k", max_retries=0)
        stream = await client.chat.completions.create(model="chat", messages=HELLO, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "Hello from vendor/big-model."
        path.write_text(path.read_text().replace("strategy: best_quality", "strategy: cheapest"))
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while True:
            raw = await client.chat.completions.with_raw_response.create(model="chat", messages=HELLO)
            if raw.headers["x-gateway-deployment"] == "closed-cheap":
                break
            assert time.monotonic() < deadline, "SIGHUP did not reload the policy"
            await asyncio.sleep(0.1)
        await client.close()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM requests WHERE status = 200").fetchone()[0] >= 2


async def test_two_workers_share_one_set_of_counters(
    tmp_path: Path, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    path = policy_file(tmp_path, vendor, vendor2, local)
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    sent = 0
    async with serve(
        path, tmp_path, "--workers", "2", env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    ) as (base, _):
        async with httpx.AsyncClient(base_url=base, limits=httpx.Limits(max_keepalive_connections=0)) as http:
            body = {"model": "chat", "messages": HELLO}
            for _ in range(10):  # until the kernel has handed connections to both workers (bounded)
                results = await asyncio.gather(
                    *[http.post("/v1/chat/completions", json=body) for _ in range(20)]
                )
                assert all(r.status_code == 200 for r in results)
                sent += 20
                if len({p.name for p in metrics_dir.glob("counter_*.db")}) == 2:
                    break
            scrapes = [(await http.get("/metrics")).text for _ in range(4)]
    assert len({p.name for p in metrics_dir.glob("counter_*.db")}) == 2  # both workers answered some requests
    for text in scrapes:  # whichever worker answered the scrape, the count is the sum over both
        line = next(
            ln
            for ln in text.splitlines()
            if ln.startswith("gateway_requests_total{") and 'status="200"' in ln
        )
        assert float(line.rsplit(" ", 1)[1]) == sent


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_check_accepts_good_and_refuses_bad_with_line(tmp_path: Path) -> None:
    ok = run_cli("check", "policies/default.yaml")
    assert ok.returncode == 0 and "ok (3 routes" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path("policies/default.yaml").read_text().replace("quality: 40", "quality: 400"))
    result = run_cli("check", str(bad))
    assert result.returncode == 1
    assert f"{bad}:20: deployments.qwen-local.quality: must be at most 100 (got 400)" in result.stderr


def test_explain_shows_candidates_removals_and_order(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(hybrid_policy_text(vendor="http://a/v1", vendor2="http://b/v1", local="http://c/v1"))
    request = tmp_path / "req.json"
    request.write_text('{"model": "chat", "messages": [{"role": "user", "content": "hi"}]}')
    result = run_cli(
        "explain", str(policy), "--request", str(request), "-H", "x-data-classification=confidential"
    )
    assert result.returncode == 0, result.stderr
    assert '"order": [\n    "open-local"\n  ]' in result.stdout
    assert "privacy floor: data location vendor" in result.stdout

    # The tenant comes from x-tenant as a keyless gateway sees it; the rule's ceiling caps the output.
    result = run_cli("explain", str(policy), "--request", str(request), "-H", "x-tenant=free")
    assert result.returncode == 0, result.stderr
    explained = json.loads(result.stdout)
    assert explained["signals"]["tenant"] == "free" and explained["order"][0] == "closed-cheap"
    assert explained["output_token_caps"] == {
        "closed-cheap": 3331
    }  # ($0.002 - 8 prompt tokens) / $0.6 per Mtok


async def test_a_client_leaving_mid_stream_stops_the_upstream_and_is_accounted(
    tmp_path: Path, vendor: FakeOpenAI, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    vendor.script("big-model", Fault.slow_stream(0.5))  # 5 chunks, 0.5 s apart
    path = policy_file(tmp_path, vendor, vendor2, local)
    async with serve(path, tmp_path) as (base, _proc):
        body = {"model": "chat", "messages": HELLO, "stream": True}
        async with httpx.AsyncClient(timeout=10) as http:
            async with http.stream("POST", base + "/v1/chat/completions", json=body) as resp:
                assert resp.status_code == 200
                async for line in resp.aiter_lines():
                    if line.startswith("data: "):
                        break  # one event read; leaving the block closes the connection
        for _ in range(100):  # bounded: 5 s
            if vendor.abandoned_streams:
                break
            await asyncio.sleep(0.05)
        assert vendor.abandoned_streams == 1  # the gateway let go of the upstream, it did not read on
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as db:  # the clean stop ingested the spool
        rows = db.execute("SELECT status, deployment, stream, completion_tokens FROM requests").fetchall()
    assert rows == [(499, "closed-best", 1, rows[0][3])] and rows[0][3] >= 1  # what was streamed is paid for
