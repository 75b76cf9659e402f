"""A fake fal.ai queue API over loopback TLS: what fal-client's `AsyncClient.subscribe` talks to.

fal-client builds its submit URL from FAL_QUEUE_RUN_HOST (read once, when fal_client is first imported)
and always speaks https, so the server listens on a socket and certificate prepared before that import
(tests/providers/conftest.py). The queue protocol it reproduces:

    POST  /{app}                                 -> {request_id, status_url, response_url, cancel_url}
    GET   /{owner}/{alias}/requests/{id}/status  -> {"status": "IN_QUEUE" | "IN_PROGRESS" | "COMPLETED"}
    GET   /{owner}/{alias}/requests/{id}         -> the app's result (FLUX: images, seed, has_nsfw_concepts)
    PUT   /{owner}/{alias}/requests/{id}/cancel
    GET   /files/{name}.png                      -> image bytes (fal's CDN)

Errors are `{"detail": ...}` with fal's statuses. Faults (tests.fakes.openai_upstream.Fault) are scripted
per app id: `http` fails the submit (or, for 422 content policy, the result fetch), `hang` keeps the request
IN_QUEUE for that many seconds, kind "nsfw" flags every image for the safety checker.
"""

from __future__ import annotations

import base64
import collections
import socket
import ssl
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.openai_upstream import PNG_1X1, Fault, Received


@dataclass
class _Job:
    app: str
    arguments: dict[str, Any]
    fault: Fault
    submitted: float


@dataclass
class FakeFal:
    sock: socket.socket
    ssl_context: ssl.SSLContext
    key: str = "fal-test-key"
    received: list[Received] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    _scripts: dict[str, collections.deque[Fault]] = field(default_factory=dict)
    _jobs: dict[str, _Job] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    base_url: str = ""

    def script(self, app: str, *faults: Fault) -> None:
        self._scripts.setdefault(app, collections.deque()).extend(faults)

    def submits(self, app: str | None = None) -> int:
        return sum(1 for r in self.received if r.path.lstrip("/") == app or (app is None and r.body))

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/files/{name}", self._file)
        app.router.add_get("/{owner}/{alias}/requests/{id}/status", self._status)
        app.router.add_put("/{owner}/{alias}/requests/{id}/cancel", self._cancel)
        app.router.add_get("/{owner}/{alias}/requests/{id}", self._result)
        app.router.add_post("/{app:.+}", self._submit)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # A duplicate of the session's listening socket: closing this server leaves the port reserved.
        dup = self.sock.dup()
        await web.SockSite(self._runner, dup, ssl_context=self.ssl_context).start()
        self.base_url = f"https://127.0.0.1:{self.sock.getsockname()[1]}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("authorization") == f"Key {self.key}"

    @staticmethod
    def _detail(status: int, detail: Any, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(
            body=orjson.dumps({"detail": detail}),
            status=status,
            content_type="application/json",
            headers=headers,
        )

    async def _submit(self, request: web.Request) -> web.Response:
        app = request.match_info["app"]
        body = await request.json(loads=orjson.loads)
        self.received.append(Received(request.path, body, dict(request.headers)))
        if not self._authorized(request):
            return self._detail(401, "No user found for Key ID and Secret")
        queue = self._scripts.get(app)
        fault = queue.popleft() if queue else Fault.ok()
        if fault.kind == "status" and not (fault.status == 422 and fault.code == "content_policy_violation"):
            if fault.status == 404:
                return self._detail(404, f"Application '{app}' not found")
            headers = {"retry-after": fault.retry_after} if fault.retry_after else {}
            return self._detail(
                fault.status, f"fake fal says {fault.status}", {**headers, "x-fal-request-id": "r"}
            )
        request_id = uuid.uuid4().hex
        self._jobs[request_id] = _Job(app, body, fault, time.monotonic())
        owner, alias = app.split("/")[:2]
        base = f"{self.base_url}/{owner}/{alias}/requests/{request_id}"
        return web.json_response(
            {
                "request_id": request_id,
                "response_url": base,
                "status_url": base + "/status",
                "cancel_url": base + "/cancel",
                "queue_position": 0,
            }
        )

    async def _status(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._detail(401, "No user found for Key ID and Secret")
        job = self._jobs.get(request.match_info["id"])
        if job is None:
            return self._detail(404, "Request not found")
        if job.fault.kind == "hang" and time.monotonic() - job.submitted < job.fault.seconds:
            return web.json_response({"status": "IN_QUEUE", "queue_position": 0})
        return web.json_response({"status": "COMPLETED", "logs": None, "metrics": {"inference_time": 0.01}})

    async def _cancel(self, request: web.Request) -> web.Response:
        self.cancelled.append(request.match_info["id"])
        return web.json_response({"status": "CANCELLATION_REQUESTED"}, status=202)

    async def _result(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._detail(401, "No user found for Key ID and Secret")
        job = self._jobs.get(request.match_info["id"])
        if job is None:
            return self._detail(404, "Request not found")
        if job.fault.kind == "status":  # the 422 content-policy refusal arrives with the result
            detail = [
                {
                    "loc": ["body", "prompt"],
                    "type": "content_policy_violation",
                    "msg": "The content could not be processed because it contained material flagged by a content checker.",
                }
            ]
            return self._detail(422, detail, {"x-fal-error-type": "content_policy_violation"})
        args = job.arguments
        size = args.get("image_size")
        width, height = (size["width"], size["height"]) if isinstance(size, dict) else (1024, 768)
        n = int(args.get("num_images") or 1)
        if args.get("sync_mode"):
            url = "data:image/png;base64," + base64.b64encode(PNG_1X1).decode()
            images = [
                {"url": url, "width": width, "height": height, "content_type": "image/png"} for _ in range(n)
            ]
        else:
            images = [
                {
                    "url": f"{self.base_url}/files/{request.match_info['id']}-{i}.png",
                    "width": width,
                    "height": height,
                    "content_type": "image/png",
                }
                for i in range(n)
            ]
        return web.json_response(
            {
                "images": images,
                "seed": int(args.get("seed") or 42),
                "prompt": args.get("prompt"),
                "timings": {"inference": 0.01},
                "has_nsfw_concepts": [job.fault.kind == "nsfw"] * n,
            }
        )

    async def _file(self, request: web.Request) -> web.Response:
        return web.Response(body=PNG_1X1, content_type="image/png")
