"""Issue 8, bad input: schemathesis against /openapi.json (no 5xx, no hang), 413 over the body limit,
400 in OpenAI's shape for wrong types, and malformed policy files that never stop or change the policy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import HarnessFactory
from tests.fakes.openai_upstream import FakeOpenAI
from tests.reliability.rel_support import SHAPE, FaultyOpenAI, gateway_process, matrix_policy

LIMIT = 65536
HELLO = [{"role": "user", "content": "hello"}]


@contextlib.asynccontextmanager
async def two_fakes() -> AsyncIterator[tuple[FakeOpenAI, FakeOpenAI]]:
    primary, backup = FaultyOpenAI("primary"), FaultyOpenAI("backup")
    await primary.start()
    await backup.start()
    try:
        yield primary, backup
    finally:
        await primary.stop()
        await backup.stop()


@pytest.mark.slow
async def test_rel_schemathesis_finds_no_5xx_and_no_hang(tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("schemathesis")
    if not st.exists():
        pytest.skip("schemathesis is not installed in this environment")
    async with two_fakes() as (primary, backup):
        policy = tmp_path / "policy.yaml"
        policy.write_text(matrix_policy(primary.base_url, backup.base_url, max_body=LIMIT))
        async with gateway_process(policy, tmp_path / "ledger.sqlite3", tmp_path / "gw.log") as gw:
            proc = await asyncio.create_subprocess_exec(
                str(st),
                "run",
                gw.base + "/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-response-time",
                "5",
                "--request-timeout",
                "10",
                "--max-examples",
                "25",
                "--seed",
                "8",
                "--generation-database",
                "none",
                "--no-color",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"},
            )
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), 150)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise AssertionError("schemathesis did not finish in 150 s (a hang?)") from None
        text = out.decode(errors="replace")
        (tmp_path / "schemathesis.txt").write_text(text)
        assert proc.returncode == 0, text[-4000:]
        assert "Traceback" not in gw.log.read_text(), gw.log.read_text()[-4000:]


@pytest.fixture
async def limited(
    make_harness: HarnessFactory,
) -> AsyncIterator[tuple[httpx.AsyncClient, FakeOpenAI, FakeOpenAI]]:
    async with two_fakes() as (primary, backup):
        async with make_harness(matrix_policy(primary.base_url, backup.base_url, max_body=LIMIT)) as h:
            yield h.http, primary, backup


@pytest.mark.parametrize(
    "path",
    ["/v1/chat/completions", "/v1/responses", "/v1/images/generations", "/v1/embeddings", "/admin/explain"],
)
@pytest.mark.parametrize("declared", [True, False])
async def test_rel_body_over_the_limit_is_413(
    limited: tuple[httpx.AsyncClient, FakeOpenAI, FakeOpenAI], path: str, declared: bool
) -> None:
    http, primary, backup = limited
    big = b'{"model": "chat", "messages": [{"role": "user", "content": "' + b"x" * (LIMIT + 10) + b'"}]}'

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: the limit must hold while reading
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    content = big if declared else chunks()
    resp = await http.post(path, content=content, headers={"content-type": "application/json"})
    assert resp.status_code == 413, resp.text
    assert set(resp.json()["error"]) == SHAPE and resp.json()["error"]["code"] == "payload_too_large"
    assert primary.calls() == backup.calls() == 0


WRONG_TYPES = [
    ("/v1/chat/completions", {"model": 5, "messages": HELLO}, "model"),
    ("/v1/chat/completions", {"model": "chat", "messages": "hello"}, "messages"),
    ("/v1/chat/completions", {"model": "chat", "messages": [{"role": "user", "content": 5}]}, "messages"),
    ("/v1/chat/completions", {"model": "chat", "messages": HELLO, "max_tokens": "ten"}, "max_tokens"),
    ("/v1/chat/completions", {"model": "chat", "messages": HELLO, "max_tokens": 0}, "max_tokens"),
    ("/v1/chat/completions", {"model": "chat", "messages": HELLO, "n": 1.5}, "n"),
    ("/v1/chat/completions", {"model": "chat", "messages": HELLO, "stream": "yes"}, "stream"),
    ("/v1/chat/completions", {"model": "chat", "messages": HELLO, "stream_options": []}, "stream_options"),
    ("/v1/chat/completions", {"model": "chat", "messages": HELLO, "tools": {"a": 1}}, "tools"),
    ("/v1/chat/completions", {"model": ["chat"], "messages": HELLO}, "model"),
    ("/v1/responses", {"model": "chat", "input": 5}, "input"),
    ("/v1/responses", {"model": "chat", "input": "x", "stream": "yes"}, "stream"),
    ("/v1/responses", {"model": "chat", "input": [{"role": "user", "content": 5}]}, "input"),
    ("/v1/responses", {"model": "chat", "input": ["hello"]}, "input"),
    ("/v1/responses", {"model": "chat", "input": "x", "metadata": {"a": 1}}, "metadata"),
    ("/v1/responses", {"model": "chat", "input": "x", "tools": [{"type": "function"}]}, "tools"),
    ("/v1/images/generations", {"model": "image", "prompt": 7}, "prompt"),
    ("/v1/images/generations", {"model": "image", "prompt": "x", "n": "2"}, "n"),
    ("/v1/images/generations", {"model": "image", "prompt": "x", "size": "huge"}, "size"),
    ("/v1/images/generations", {"model": "image", "prompt": "x", "response_format": 1}, "response_format"),
    ("/v1/embeddings", {"model": "embedding", "input": 5}, "input"),
    ("/v1/embeddings", {"model": "embedding", "input": {"a": "b"}}, "input"),
    ("/v1/embeddings", {"model": "embedding", "input": []}, "input"),
    ("/v1/embeddings", {"model": "embedding", "input": "x", "dimensions": "many"}, "dimensions"),
]


@pytest.mark.parametrize(("path", "body", "param"), WRONG_TYPES)
async def test_rel_wrong_types_are_400_in_openai_shape(
    limited: tuple[httpx.AsyncClient, FakeOpenAI, FakeOpenAI], path: str, body: dict[str, object], param: str
) -> None:
    http, primary, backup = limited
    resp = await http.post(path, json=body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert set(error) == SHAPE and error["type"] == "invalid_request_error"
    assert (error["param"] or "").split(".")[0] == param, error
    assert resp.headers["x-request-id"]
    assert primary.calls() == backup.calls() == 0


async def test_rel_stream_false_as_a_string_is_not_streamed(
    limited: tuple[httpx.AsyncClient, FakeOpenAI, FakeOpenAI],
) -> None:
    http, primary, _ = limited
    resp = await http.post(
        "/v1/chat/completions", json={"model": "chat", "messages": HELLO, "stream": "false"}
    )
    # Either refused as a wrong type, or answered as the non-streamed answer it validated as.
    assert resp.status_code == 400 or (
        resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    ), (resp.status_code, resp.headers.get("content-type"))
    assert all(r.body.get("stream") is not True for r in primary.received)


@pytest.mark.parametrize(
    "raw",
    [b"", b"null", b"[]", b'"chat"', b"\xff\xfe\x00garbage", b'{"model": "chat", "messages": [', b"{" * 5000],
)
async def test_rel_not_an_object_is_400(
    limited: tuple[httpx.AsyncClient, FakeOpenAI, FakeOpenAI], raw: bytes
) -> None:
    http, primary, _ = limited
    resp = await http.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert set(resp.json()["error"]) == SHAPE
    assert primary.calls() == 0


async def _wait_refused(h: object, count: int) -> None:
    text = 'gateway_policy_reloads_total{result="refused"} '
    for _ in range(200):  # bounded: 10 s
        metrics = h.gateway.accounting.metrics.exposition().decode()  # type: ignore[attr-defined]
        line = next((ln for ln in metrics.splitlines() if ln.startswith(text)), text + "0")
        if float(line.rsplit(" ", 1)[1]) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the watcher did not refuse reload #{count} in 10 s")


async def test_rel_malformed_policy_files_never_stop_or_change_the_running_policy(
    make_harness: HarnessFactory, tmp_path: Path
) -> None:
    async with two_fakes() as (primary, backup):
        text = matrix_policy(primary.base_url, backup.base_url)
        policy_file = tmp_path / "policy.yaml"
        async with make_harness(text, policy_file=policy_file, watch_interval_s=0.05) as h:
            good = h.gateway.store.current

            async def still_serving() -> None:
                resp = await h.http.post("/v1/chat/completions", json={"model": "chat", "messages": HELLO})
                assert resp.status_code == 200 and resp.headers["x-gateway-deployment"] == "p-chat"
                assert h.gateway.store.current is good

            bad_files = [
                text[: len(text) // 2],  # truncated mid-document
                text[:-40] + "\n  breaker: {failure_ratio: 0.5, min_re",  # truncated mid-mapping
                os.urandom(4096),  # binary garbage
                b"\x00" * 512,
                "",  # empty
                "   \n\n",  # whitespace only
                "- just\n- a\n- list\n",
                "version: 1\n",  # valid YAML, not a policy
            ]
            for n, bad in enumerate(bad_files, start=1):
                if isinstance(bad, bytes):
                    policy_file.write_bytes(bad)
                else:
                    policy_file.write_text(bad)
                await _wait_refused(h, n)
                await still_serving()
                resp = await h.http.post("/admin/reload")
                assert resp.status_code == 422 and resp.json()["reloaded"] is False
                await still_serving()

            # Deleted: the watcher keeps the running policy; an explicit reload is refused.
            policy_file.unlink()
            await asyncio.sleep(0.3)
            await still_serving()
            resp = await h.http.post("/admin/reload")
            assert resp.status_code == 422
            await still_serving()
            # Restored: the same rules are swapped back in and serve as before.
            policy_file.write_text(text)
            for _ in range(200):
                if h.gateway.store.current is not good:
                    break
                await asyncio.sleep(0.05)
            assert h.gateway.store.current is not good, "the restored file was not picked up"
            assert h.gateway.store.current.policy == good.policy
            resp = await h.http.post("/v1/chat/completions", json={"model": "chat", "messages": HELLO})
            assert resp.status_code == 200 and resp.headers["x-gateway-deployment"] == "p-chat"
