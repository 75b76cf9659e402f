"""One contract for every provider kind, at the adapter: the same vendor behaviour ends in the same outcome.

Each SDK talks real HTTP to its fake vendor on loopback (tests/fakes/*). Success returns an OpenAI-shaped
body and real usage; each failure raises `UpstreamError` with the ErrorKind fallback decides on, and no
message carries the key.
"""

from __future__ import annotations

import pytest

from gateway.errors import ErrorKind, UpstreamError
from providers.base import CallContext
from tests.fakes.openai_upstream import Fault
from tests.providers.vendors import FAILURES, GOOD_KEY, KEY_ENV, KINDS, VendorCase

pytestmark = pytest.mark.parametrize("vendor_case", KINDS, indirect=True)


async def test_success_returns_openai_shape_and_real_usage(vendor_case: VendorCase) -> None:
    provider = vendor_case.provider()
    try:
        result = await vendor_case.call(provider)
    finally:
        await provider.aclose()
    if vendor_case.modality == "chat":
        assert result.body["object"] == "chat.completion"
        assert result.body["choices"][0]["message"]["content"].startswith("Hello from")
        assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    else:
        assert isinstance(result.body["created"], int)
        assert result.body["data"] and result.body["data"][0]["url"].startswith("https://127.0.0.1:")
        assert result.usage.images == 1
    assert not result.usage.estimated


async def test_stream_yields_chunks_then_usage(vendor_case: VendorCase) -> None:
    if not vendor_case.streams:
        pytest.skip(f"{vendor_case.kind} serves images; nothing to stream")
    provider = vendor_case.provider()
    ctx = CallContext("req_stream", 2.0)
    body = {"messages": [{"role": "user", "content": "hi"}]}
    text, finish, usage = "", None, None
    try:
        async for chunk in provider.stream_chat(vendor_case.deployment(), body, ctx):
            assert chunk.data["object"] == "chat.completion.chunk"
            for choice in chunk.data.get("choices") or ():
                text += choice.get("delta", {}).get("content") or ""
                finish = choice.get("finish_reason") or finish
            usage = chunk.usage or usage
    finally:
        await provider.aclose()
    assert text.startswith("Hello from") and finish == "stop"
    assert usage is not None and usage.completion_tokens > 0


async def test_stream_cut_midway_never_looks_complete(vendor_case: VendorCase) -> None:
    if not vendor_case.streams:
        pytest.skip(f"{vendor_case.kind} serves images; nothing to stream")
    vendor_case.fake.script(vendor_case.fake_model, Fault.cut_stream(2))
    provider = vendor_case.provider()
    seen = 0
    try:
        with pytest.raises(UpstreamError) as caught:
            async for _ in provider.stream_chat(
                vendor_case.deployment(),
                {"messages": [{"role": "user", "content": "hi"}]},
                CallContext("r", 2.0),
            ):
                seen += 1
    finally:
        await provider.aclose()
    assert caught.value.kind is ErrorKind.TRANSIENT
    assert seen <= 3


@pytest.mark.parametrize("scenario", list(FAILURES))
async def test_failure_maps_to_the_same_error_kind(
    vendor_case: VendorCase, scenario: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if scenario == "bad_key":
        monkeypatch.setenv(KEY_ENV, "sk-wrong-SECRET-0000")
    vendor_case.arm(scenario)
    provider = vendor_case.provider()
    try:
        with pytest.raises(UpstreamError) as caught:
            await vendor_case.call(provider)
    finally:
        await provider.aclose()
    error = caught.value
    assert error.kind is FAILURES[scenario], error.message
    if scenario == "rate_limited":
        assert error.retry_after == pytest.approx(1.0)
    assert GOOD_KEY not in error.message and "sk-wrong-SECRET" not in error.message
    fault = vendor_case.faults.get(scenario)
    if vendor_case.kind != "openai_compatible" and (fault is None or fault.kind != "nsfw"):
        # SDK adapters map the SDK's exception at the boundary: `raise ... from exc`. (An image blanked by
        # the safety checker arrives as a successful answer: there is no exception to chain.)
        assert isinstance(error.__cause__, Exception)


async def test_missing_key_fails_the_call_not_the_start(
    vendor_case: VendorCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    provider = vendor_case.provider()  # constructing never fails
    try:
        with pytest.raises(UpstreamError) as caught:
            await vendor_case.call(provider)
    finally:
        await provider.aclose()
    assert caught.value.kind is ErrorKind.AUTH
    if vendor_case.kind != "openai_compatible":  # it sends no key, and the vendor's 401 says so
        assert KEY_ENV in caught.value.message
