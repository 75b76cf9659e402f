"""An upstream that redirects: never followed (the provider key must not travel to another host), a
clear error that names where it pointed, and fallback to the next candidate."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest
from aiohttp import web

from tests.conftest import HarnessFactory, hybrid_policy_text
from tests.fakes.openai_upstream import FakeOpenAI

HELLO = [{"role": "user", "content": "hello"}]


class Redirector:
    """Answers every request with `status` and a Location on the `elsewhere` server, which counts visits."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.visits_elsewhere = 0
        self._runners: list[web.AppRunner] = []
        self.base_url = self.elsewhere = ""

    async def _start(self, handler: web.RequestHandler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    async def start(self) -> None:
        async def elsewhere(request: web.Request) -> web.Response:
            self.visits_elsewhere += 1
            return web.json_response({"error": {"message": "should never be reached"}}, status=500)

        async def redirect(request: web.Request) -> web.Response:
            return web.Response(status=self.status, headers={"Location": self.elsewhere + request.path})

        self.elsewhere = await self._start(elsewhere)
        self.base_url = await self._start(redirect) + "/v1"

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()


@pytest.fixture(params=[301, 307, 308])
async def redirector(request: pytest.FixtureRequest) -> AsyncIterator[Redirector]:
    server = Redirector(request.param)
    await server.start()
    yield server
    await server.stop()


async def test_a_redirecting_upstream_is_skipped_and_its_key_stays_home(
    make_harness: HarnessFactory, redirector: Redirector, vendor2: FakeOpenAI, local: FakeOpenAI
) -> None:
    text = hybrid_policy_text(vendor=redirector.base_url, vendor2=vendor2.base_url, local=local.base_url)
    async with make_harness(text) as h:
        raw = await h.client.chat.completions.with_raw_response.create(model="chat", messages=HELLO)
        assert raw.headers["x-gateway-deployment"] == "closed-cheap"  # fell back past the redirect
        assert raw.parse().choices[0].message.content == "Hello from vendor2/small-model."

        stream = await h.client.chat.completions.create(model="chat", messages=HELLO, stream=True)
        assert [c async for c in stream]  # streams fall back the same way

    assert redirector.visits_elsewhere == 0


async def test_the_error_names_the_redirect_and_why_it_was_not_followed(
    make_harness: HarnessFactory, redirector: Redirector
) -> None:
    everywhere = redirector.base_url
    text = hybrid_policy_text(vendor=everywhere, vendor2=everywhere, local=everywhere)
    async with make_harness(text) as h:
        with pytest.raises(openai.APIStatusError) as failed:
            await h.client.chat.completions.create(model="chat", messages=HELLO)
    message = failed.value.message
    assert f"HTTP {redirector.status} redirect to {redirector.elsewhere}/v1/chat/completions" in message
    assert "not followed" in message and "base_url" in message
    assert redirector.visits_elsewhere == 0
