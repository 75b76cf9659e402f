"""Start the fake upstream: nginx returning fixed bodies when installed, else the aiohttp one.

nginx serves both bodies as small static files (cached by the page cache; a POST is turned into an
internal GET through `error_page 405`, because nginx's `return` caps a body at 4 KB), so on one worker it
answers far more requests a second than any target can send it: the floor (a) then measures the load
generator and loopback, not the fake.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from bench.payloads import PLAIN_PREFIX, STREAM_PREFIX, plain_answer, stream_answer
from bench.procs import Server, free_port

_NGINX_CONF = """
daemon off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port};
        location = {plain}/chat/completions {{
            error_page 405 =200 /_bodies/plain.json;
            return 405;
        }}
        location = {stream}/chat/completions {{
            error_page 405 =200 /_bodies/stream.sse;
            return 405;
        }}
        location /_bodies/ {{
            internal;
            root {work};
            types {{ application/json json; text/event-stream sse; }}
        }}
    }}
}}
"""


def nginx_available() -> bool:
    return shutil.which("nginx") is not None


def start_upstream(work: Path, *, prefer_nginx: bool = True) -> Server:
    """Start and return the fake upstream; `server.name` says which kind it is."""
    port = free_port()
    if prefer_nginx and nginx_available():
        work.chmod(0o755)  # nginx workers run as an unprivileged user and must read the bodies
        bodies = work / "_bodies"
        bodies.mkdir(exist_ok=True)
        (bodies / "plain.json").write_bytes(plain_answer())
        (bodies / "stream.sse").write_bytes(stream_answer())
        conf = work / "nginx.conf"
        conf.write_text(
            _NGINX_CONF.format(
                work=work,
                port=port,
                plain=PLAIN_PREFIX,
                stream=STREAM_PREFIX,
            )
        )
        argv = [
            str(shutil.which("nginx")),
            "-c",
            str(conf),
            "-p",
            str(work),
            "-e",
            str(work / "nginx-error.log"),
        ]
        server = Server("nginx", argv, port, log=work / "upstream.log")
    else:
        argv = [sys.executable, "-m", "bench.fake_upstream", "--port", str(port)]
        server = Server("aiohttp", argv, port, log=work / "upstream.log", cwd=_repo_root())
    server.start()
    return server


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
