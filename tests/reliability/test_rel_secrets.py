"""Issue 8, secrets: after a run with faults, bad keys and admin calls against `gateway serve`, the
gateway's log, every response (bodies and headers), /metrics and the ledger files hold no provider key,
client key or admin key."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.openai_upstream import Fault
from tests.reliability.rel_support import (
    ADMIN_KEY,
    BACKUP_KEY,
    PRIMARY_KEY,
    FaultyOpenAI,
    echo_key,
    gateway_process,
    matrix_policy,
)
from tests.reliability.test_rel_access import issue_key

pytestmark = pytest.mark.slow
HELLO = [{"role": "user", "content": "hello"}]


@contextlib.asynccontextmanager
async def fakes() -> AsyncIterator[tuple[FaultyOpenAI, FaultyOpenAI]]:
    primary, backup = FaultyOpenAI("primary"), FaultyOpenAI("backup")
    await primary.start()
    await backup.start()
    try:
        yield primary, backup
    finally:
        await primary.stop()
        await backup.stop()


def needles(client_key: str) -> dict[str, str]:
    return {
        "primary provider key": PRIMARY_KEY,
        "backup provider key": BACKUP_KEY,
        "admin key": ADMIN_KEY,
        "client key": client_key,
        "client key secret": client_key.split("_", 2)[2],
    }


async def exercise(
    tmp: Path, faults: list[Fault], *, backup_too: bool = False
) -> tuple[dict[str, bytes], dict[str, str], list[str]]:
    """Run traffic through a keyed gateway process; return every place a secret could end up."""
    ledger = tmp / "ledger.sqlite3"
    client_key = issue_key(ledger, "acme")
    seen: list[bytes] = []
    async with fakes() as (primary, backup):
        for fault in faults:
            primary.always("p-chat", fault, times=4)
            primary.always("p-embed", fault, times=4)
            if backup_too:  # no healthy fallback: the client sees the last upstream error
                backup.always("b-chat", fault, times=4)
                backup.always("b-embed", fault, times=4)
        policy = tmp / "policy.yaml"
        policy.write_text(matrix_policy(primary.base_url, backup.base_url, retries=1))
        env = {"GATEWAY_ADMIN_KEY": ADMIN_KEY}
        async with gateway_process(policy, ledger, tmp / "gw.log", env=env) as gw:
            good = {"authorization": f"Bearer {client_key}"}
            admin = {"authorization": f"Bearer {ADMIN_KEY}"}
            async with httpx.AsyncClient(base_url=gw.base, timeout=30) as http:
                calls = [
                    ("POST", "/v1/chat/completions", {"model": "chat", "messages": HELLO}, good),
                    (
                        "POST",
                        "/v1/chat/completions",
                        {"model": "chat", "messages": HELLO, "stream": True},
                        good,
                    ),
                    ("POST", "/v1/embeddings", {"model": "embedding", "input": "x"}, good),
                    (
                        "POST",
                        "/v1/images/generations",
                        {"model": "image", "prompt": "x", "size": "256x256"},
                        good,
                    ),
                    (
                        "POST",
                        "/v1/chat/completions",
                        {"model": "chat", "messages": HELLO},
                        {"authorization": f"Bearer {client_key}x"},
                    ),
                    ("POST", "/v1/chat/completions", {"model": "chat", "messages": HELLO}, admin),
                    ("POST", "/v1/chat/completions", {"model": "nope", "messages": HELLO}, good),
                    ("POST", "/v1/chat/completions", {"model": "chat", "messages": "bad"}, good),
                    ("GET", "/admin/policy", None, admin),
                    ("GET", "/admin/policy", None, good),
                    ("GET", "/admin/deployments", None, admin),
                    ("POST", "/admin/explain", {"request": {"model": "chat", "messages": HELLO}}, admin),
                    ("POST", "/admin/reload", None, {"authorization": f"Bearer {ADMIN_KEY[:-1]}"}),
                    ("GET", "/metrics", None, {}),
                    ("GET", "/readyz", None, {}),
                ]
                for method, path, body, headers in calls:
                    resp = await http.request(method, path, json=body, headers=headers)
                    seen.append(f"{resp.status_code} {dict(resp.headers)}\n".encode() + resp.content)
    places = {f"response #{i}": b for i, b in enumerate(seen)}
    places["gateway log"] = (tmp / "gw.log").read_bytes()
    for f in tmp.rglob("*"):
        if f.is_file() and "ledger.sqlite3" in str(f):  # the database, its WAL, the spool
            places[str(f.relative_to(tmp))] = f.read_bytes()
    return places, needles(client_key), [r.headers.get("Authorization", "") for r in primary.received]


def hits(places: dict[str, bytes], secrets: dict[str, str]) -> list[str]:
    return [
        f"{what} in {where}"
        for where, blob in places.items()
        for what, secret in secrets.items()
        if secret.encode() in blob
    ]


async def test_rel_no_secret_in_logs_bodies_metrics_or_ledger(tmp_path: Path) -> None:
    faults = [Fault.http(401, "invalid_api_key"), Fault.http(500), Fault.malformed(), Fault.reset()]
    places, secrets, sent = await exercise(tmp_path, faults)
    assert any(PRIMARY_KEY in a for a in sent), "the provider key never reached the vendor: test is void"
    assert hits(places, secrets) == []


async def test_rel_upstream_echoing_the_key_does_not_leak_it(tmp_path: Path) -> None:
    places, secrets, _ = await exercise(tmp_path, [echo_key()], backup_too=True)
    assert hits(places, secrets) == []
