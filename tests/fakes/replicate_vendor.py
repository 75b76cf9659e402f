"""A fake Replicate HTTP API over loopback TLS: what `replicate.Client.async_run` talks to.

    POST /v1/models/{owner}/{name}/predictions   (Prefer: wait=N) -> a prediction, finished when it can be
    GET  /v1/predictions/{id}                    -> the prediction, for polling
    GET  /files/{name}.png                       -> output bytes (replicate.delivery)

Errors are RFC 7807 problem details (`{"title", "detail", "status"}`); a failed prediction is HTTP 201/200
with `status: failed` and `error`, which the SDK raises as ModelError. Output URLs are https (like
replicate.delivery), so the SDK turns them into FileOutput objects. Faults (tests.fakes.openai_upstream.Fault)
are scripted per model: `http` fails the create call, `hang` keeps the prediction processing for that many
seconds, kind "nsfw" fails it the way FLUX's safety checker does.
"""

from __future__ import annotations

import collections
import ssl
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.openai_upstream import PNG_1X1, Fault, Received


@dataclass
class _Prediction:
    data: dict[str, Any]
    fault: Fault
    created: float


@dataclass
class FakeReplicate:
    ssl_context: ssl.SSLContext
    token: str = "r8_test_token"
    received: list[Received] = field(default_factory=list)
    _scripts: dict[str, collections.deque[Fault]] = field(default_factory=dict)
    _predictions: dict[str, _Prediction] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    base_url: str = ""

    def script(self, model: str, *faults: Fault) -> None:
        self._scripts.setdefault(model, collections.deque()).extend(faults)

    def creates(self) -> int:
        return sum(1 for r in self.received if r.path.endswith("/predictions"))

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/models/{owner}/{name}/predictions", self._create)
        app.router.add_get("/v1/predictions/{id}", self._get)
        app.router.add_get("/files/{name}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"https://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @staticmethod
    def _problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
        body = {"title": title, "detail": detail, "status": status}
        return web.Response(
            body=orjson.dumps(body), status=status, content_type="application/problem+json", headers=headers
        )

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.token}"

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json(loads=orjson.loads)
        self.received.append(Received(request.path, body, dict(request.headers)))
        if not self._authorized(request):
            return self._problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        model = f"{request.match_info['owner']}/{request.match_info['name']}"
        queue = self._scripts.get(model)
        fault = queue.popleft() if queue else Fault.ok()
        if fault.kind == "status":
            if fault.status == 429:
                seconds = fault.retry_after or "1"
                return self._problem(
                    429,
                    "Request was throttled",
                    f"Request was throttled. Expected available in {seconds} seconds.",
                    {"retry-after": seconds},
                )
            if fault.status == 404:
                return self._problem(404, "Not found", "The requested resource could not be found.")
            return self._problem(fault.status, "Internal server error", f"fake replicate says {fault.status}")
        pid = uuid.uuid4().hex[:12]
        inputs = body.get("input") or {}
        data = {
            "id": pid,
            "model": model,
            "version": "fakeversion",
            "input": inputs,
            "logs": "",
            "output": None,
            "error": None,
            "status": "starting",
            "created_at": "2026-11-22T00:00:00Z",
            "metrics": {},
            "urls": {
                "get": f"{self.base_url}/v1/predictions/{pid}",
                "cancel": f"{self.base_url}/v1/predictions/{pid}/cancel",
            },
        }
        prediction = _Prediction(data, fault, time.monotonic())
        self._predictions[pid] = prediction
        self._advance(prediction, polled=False)
        return web.json_response(data, status=201)

    def _advance(self, prediction: _Prediction, *, polled: bool = True) -> None:
        fault, data = prediction.fault, prediction.data
        if fault.kind == "hang" and time.monotonic() - prediction.created < fault.seconds:
            # Past `Prefer: wait`, Replicate answers the create call with "starting"; polls see "processing".
            data["status"] = "processing" if polled else "starting"
            return
        if fault.kind == "nsfw":
            data.update(
                status="failed",
                error="NSFW content detected. Try running it again, or try a different prompt.",
            )
            return
        n = int(data["input"].get("num_outputs") or 1)
        data.update(
            status="succeeded",
            metrics={"predict_time": 0.01},
            output=[f"{self.base_url}/files/{data['id']}-{i}.png" for i in range(n)],
        )

    async def _get(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        prediction = self._predictions.get(request.match_info["id"])
        if prediction is None:
            return self._problem(404, "Not found", "The requested resource could not be found.")
        self._advance(prediction)
        return web.json_response(prediction.data)

    async def _file(self, request: web.Request) -> web.Response:
        return web.Response(body=PNG_1X1, content_type="image/png")
