"""Start and stop the local backend for providers the policy marks `managed: true`.

`gateway serve` does this once, in the parent process, before any worker starts, so the README's one run
command brings up the gateway and its local open-weights backend together.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

from gateway.policy import Policy, ProviderSpec

log = logging.getLogger("gateway.managed")


def backend_command(spec: ProviderSpec) -> list[str]:
    parts = urlsplit(spec.base_url or "")
    cmd = [
        sys.executable,
        "-m",
        "local_backend",
        "serve",
        "--host",
        parts.hostname or "127.0.0.1",
        "--port",
        str(parts.port or 8100),
    ]
    if spec.managed_config:
        cmd += ["--config", spec.managed_config]
    return cmd


def _healthz(spec: ProviderSpec) -> str:
    parts = urlsplit(spec.base_url or "")
    return f"{parts.scheme}://{parts.netloc}/healthz"


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    return False


@contextlib.contextmanager
def managed_backends(policy: Policy, timeout_s: float = 60.0) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, spec in policy.providers.items():
            if not spec.managed:
                continue
            cmd = backend_command(spec)
            log.info("starting managed local backend for provider %s: %s", name, " ".join(cmd))
            proc = subprocess.Popen(cmd, env=os.environ.copy())
            procs.append(proc)
            if not wait_healthy(_healthz(spec), proc, timeout_s):
                log.error("local backend for provider %s did not become healthy in %.0fs", name, timeout_s)
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
