"""Shared by the reliability tests and scripts: a fake with extra fault kinds, the matrix policy, and
`gateway serve` as a subprocess (with its log file, so secrets can be searched for afterwards).

Extra fault kinds (built as `Fault(kind=...)`; the shared fake's own kinds are unchanged):

    Fault("oversized", seconds=MiB)   a 200 answer whose body is `seconds` MiB of valid JSON
    Fault("echo_key")                 a 401 whose message quotes the Authorization header it received
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
from aiohttp import web

from tests.fakes.openai_upstream import FakeOpenAI, Fault
from tests.processes import free_port, serve_command

PRIMARY_KEY = "sk-rel-primary-SECRET-5f1e2d3c4b5a"
BACKUP_KEY = "sk-rel-backup-SECRET-a9b8c7d6e5f4"
ADMIN_KEY = "adm-rel-SECRET-0a1b2c3d4e5f6a7b"
SHAPE = {"message", "type", "param", "code"}


def oversized(mib: int = 24) -> Fault:
    return Fault("oversized", seconds=float(mib))


def echo_key() -> Fault:
    return Fault("echo_key")


class FaultyOpenAI(FakeOpenAI):
    """FakeOpenAI plus the fault kinds above."""

    async def _common_fault(self, request: web.Request, fault: Fault) -> web.StreamResponse | None:
        if fault.kind == "oversized":
            size = int(fault.seconds * 1024 * 1024)
            filler = "A" * size
            if request.path.endswith("/embeddings"):
                body = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}]}
                body["model"] = filler
            elif request.path.endswith("/images/generations"):
                body = {"created": 0, "data": [{"b64_json": filler}]}
            else:
                body = {
                    "id": "chatcmpl-big",
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": filler},
                            "finish_reason": "stop",
                        }
                    ],
                }
            ctype = "application/json"
            raw = orjson.dumps(body)
            if request.path.endswith("/chat/completions") and (await self._wants_stream(request)):
                ctype = "text/event-stream"
                raw = b"data: " + raw + b"\n\n"
            return web.Response(body=raw, content_type=ctype.split(";")[0])
        if fault.kind == "echo_key":
            err = {
                "error": {
                    "message": f"Incorrect API key provided: {request.headers.get('Authorization', '')}",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            }
            return web.Response(body=orjson.dumps(err), status=401, content_type="application/json")
        return await super()._common_fault(request, fault)

    @staticmethod
    async def _wants_stream(request: web.Request) -> bool:
        body = await request.json(loads=orjson.loads)
        return bool(body.get("stream"))


MATRIX_POLICY = """
version: 1
providers:
  primary: {{kind: openai_compatible, base_url: "{primary}", api_key_env: REL_PRIMARY_KEY, timeout_s: {timeout}, connect_timeout_s: 0.3, max_response_bytes: 4194304}}
  backup:  {{kind: openai_compatible, base_url: "{backup}", api_key_env: REL_BACKUP_KEY, timeout_s: {timeout}, connect_timeout_s: 0.3, max_response_bytes: 4194304}}
deployments:
  p-chat:  {{provider: primary, model: p-chat, modality: chat, openness: closed, data: {{location: vendor}}, quality: 90,
            price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}}}
  b-chat:  {{provider: backup, model: b-chat, modality: chat, openness: closed, data: {{location: vendor}}, quality: 80,
            price: {{input_per_mtok: 0.5, output_per_mtok: 1.0}}}}
  p-image: {{provider: primary, model: p-image, modality: image, openness: closed, data: {{location: vendor}}, price: {{per_image: 0.04}}}}
  b-image: {{provider: backup, model: b-image, modality: image, openness: closed, data: {{location: vendor}}, price: {{per_image: 0.02}}}}
  p-embed: {{provider: primary, model: p-embed, modality: embedding, openness: closed, data: {{location: vendor}}, price: {{input_per_mtok: 0.1}}}}
  b-embed: {{provider: backup, model: b-embed, modality: embedding, openness: closed, data: {{location: vendor}}, price: {{input_per_mtok: 0.1}}}}
routes:
  chat:      {{candidates: [p-chat, b-chat], strategy: ordered}}
  image:     {{candidates: [p-image, b-image], strategy: ordered}}
  embedding: {{candidates: [p-embed, b-embed], strategy: ordered}}
fallback:
  retries: {retries}
  backoff_ms: [1, 5]
  deadline_ms: 10000
  max_retry_after_ms: 200
  breaker: {{failure_ratio: 0.5, min_requests: {min_requests}, window_s: 30, open_s: {open_s}}}
limits: {{max_body_bytes: {max_body}}}
"""


def matrix_policy(primary: str, backup: str, **kw: object) -> str:
    values: dict[str, object] = {
        "timeout": 0.6,
        "retries": 1,
        "min_requests": 1000,
        "open_s": 30,
        "max_body": 4194304,
        **kw,
    }
    return MATRIX_POLICY.format(primary=primary, backup=backup, **values)


def set_provider_keys(env: dict[str, str] | None = None) -> dict[str, str]:
    keys = {"REL_PRIMARY_KEY": PRIMARY_KEY, "REL_BACKUP_KEY": BACKUP_KEY}
    if env is not None:
        env.update(keys)
    return keys


@dataclass
class Served:
    base: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int


async def start_gateway(
    policy: Path, ledger: Path, log: Path, *, port: int | None = None, env: dict[str, str] | None = None
) -> Served:
    port = port or free_port()
    cmd = serve_command(policy, port, ledger)
    full_env = {**os.environ, "GATEWAY_WATCH_POLICY": "0", **set_provider_keys(), **(env or {})}
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(base + "/healthz")).status_code == 200:
                    return Served(base, proc, log, port)
            if proc.poll() is not None:
                raise AssertionError(log.read_text())
            await asyncio.sleep(0.1)
    proc.kill()
    raise AssertionError("gateway did not start in 20 s")


async def stop_gateway(served: Served, *, hard: bool = False) -> int:
    """SIGTERM (clean: the ledger is flushed) or SIGKILL; always bounded."""
    proc = served.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 20)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 5)
    return int(proc.returncode)


@contextlib.asynccontextmanager
async def gateway_process(
    policy: Path, ledger: Path, log: Path, *, env: dict[str, str] | None = None
) -> AsyncIterator[Served]:
    served = await start_gateway(policy, ledger, log, env=env)
    try:
        yield served
    finally:
        await stop_gateway(served)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def elapsed_since(t0: float) -> float:
    return time.perf_counter() - t0
