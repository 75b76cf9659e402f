"""The aiohttp fake upstream, for machines without nginx: `python -m bench.fake_upstream --port N`.

Answers POST {PLAIN_PREFIX}/chat/completions with the fixed JSON answer and POST
{STREAM_PREFIX}/chat/completions with the fixed SSE stream, after reading the request body (as a real
server would). Slower than nginx, so it lowers every target's ceiling; the table says which one ran.
"""

from __future__ import annotations

import argparse

from aiohttp import web

from bench.payloads import PLAIN_PREFIX, STREAM_PREFIX, plain_answer, stream_answer

_PLAIN = plain_answer()
_STREAM = stream_answer()


async def _plain(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=_PLAIN, content_type="application/json")


async def _stream(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=_STREAM, content_type="text/event-stream")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post(PLAIN_PREFIX + "/chat/completions", _plain)
    app.router.add_post(STREAM_PREFIX + "/chat/completions", _stream)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # uvloop only makes it faster
        pass
    web.run_app(make_app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
