"""The five targets (a)-(e): how each is started and how a request to it looks.

Every target is configured for the same fake upstream and receives the same request body; the only
differences are the URL, the model name each one maps to the upstream, and Portkey's routing headers.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.payloads import CHAT_MODEL, PLAIN_PREFIX, STREAM_MODEL, STREAM_PREFIX, UPSTREAM_MODEL, request_body
from bench.procs import Server, free_port

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
LITELLM_VENV = BENCH_DIR / ".venvs" / "litellm"
LITELLM_PIN = "litellm[proxy]==1.100.5"
PORTKEY_DIR = BENCH_DIR / ".node"
PORTKEY_PIN = "@portkey-ai/gateway@1.15.2"
UPSTREAM_KEY = "sk-bench-not-a-secret"


@dataclass(frozen=True)
class Endpoint:
    """One kind of request (plain or streamed) to one target."""

    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Target:
    key: str
    label: str
    plain: Endpoint
    stream: Endpoint
    server: Server | None = None  # None for (a): the upstream itself, measured by the caller

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def _json_headers(**extra: str) -> dict[str, str]:
    return {"content-type": "application/json", **extra}


def _openai_endpoints(port: int, **headers: str) -> tuple[Endpoint, Endpoint]:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    return (
        Endpoint(url, request_body(CHAT_MODEL), _json_headers(**headers)),
        Endpoint(url, request_body(STREAM_MODEL, stream=True), _json_headers(**headers)),
    )


def direct(upstream: Server) -> Target:
    base = f"http://127.0.0.1:{upstream.port}"
    return Target(
        "a",
        f"direct to upstream ({upstream.name})",
        Endpoint(base + PLAIN_PREFIX + "/chat/completions", request_body(UPSTREAM_MODEL), _json_headers()),
        Endpoint(
            base + STREAM_PREFIX + "/chat/completions",
            request_body(UPSTREAM_MODEL, stream=True),
            _json_headers(),
        ),
    )


def passthrough(upstream: Server, work: Path, client: str = "aiohttp") -> Target:
    """(b) with aiohttp's client, the issue's reference; (f) with the gateway's own client."""
    port = free_port()
    argv = [
        sys.executable, "-m", "bench.passthrough", "--port", str(port),
        "--upstream", f"http://127.0.0.1:{upstream.port}", "--client", client,
    ]  # fmt: skip
    name = "passthrough" if client == "aiohttp" else f"passthrough-{client}"
    server = Server(name, argv, port, cwd=REPO_ROOT, log=work / f"{name}.log")
    server.start()
    plain, stream = _openai_endpoints(port)
    if client == "aiohttp":
        return Target("b", "bare passthrough (uvicorn+uvloop+httptools+aiohttp)", plain, stream, server)
    return Target("f", "bare passthrough on the gateway's client (providers/http1/)", plain, stream, server)


BENCH_POLICY = """
version: 1
providers:
  upstream-plain:  {{kind: openai_compatible, base_url: "{base}{plain}", timeout_s: 30}}
  upstream-stream: {{kind: openai_compatible, base_url: "{base}{stream}", timeout_s: 30}}
  local-plain:     {{kind: openai_compatible, base_url: "{base}{plain}", usd_per_hour: 3.6, timeout_s: 30}}
  local-stream:    {{kind: openai_compatible, base_url: "{base}{stream}", usd_per_hour: 3.6, timeout_s: 30}}
deployments:
  closed-plain:  {{provider: upstream-plain, model: {model}, modality: chat, openness: closed, data: {{location: vendor}},
                  quality: 90, price: {{input_per_mtok: 2.5, output_per_mtok: 10.0}}, context_window: 128000}}
  open-plain:    {{provider: local-plain, model: {model}, modality: chat, openness: open, data: {{location: local}},
                  quality: 60, est_device_seconds: 1, context_window: 32000}}
  closed-stream: {{provider: upstream-stream, model: {model}, modality: chat, openness: closed, data: {{location: vendor}},
                  quality: 90, price: {{input_per_mtok: 2.5, output_per_mtok: 10.0}}, context_window: 128000}}
  open-stream:   {{provider: local-stream, model: {model}, modality: chat, openness: open, data: {{location: local}},
                  quality: 60, est_device_seconds: 1, context_window: 32000}}
routes:
  {chat}:
    candidates: [closed-plain, open-plain]
    strategy: best_quality
    rules: &rules
      - {{name: confidential-stays-local, when: {{classification: confidential}}, require: {{data_location: [local, on_prem]}}}}
      - {{name: pii-open-only, when: {{pii: true}}, require: {{openness: open}}}}
      - {{name: free-tier-cap, when: {{tenant: free}}, require: {{max_cost_usd: 0.002}}, prefer: cheapest}}
      - {{name: drafts-cheap, when: {{quality: draft}}, prefer: cheapest}}
  {stream_route}:
    candidates: [closed-stream, open-stream]
    strategy: best_quality
    rules: *rules
fallback:
  retries: 1
  backoff_ms: [10, 100]
  deadline_ms: 30000
"""


def gateway(upstream: Server, work: Path) -> Target:
    """Target (e): this gateway, one worker, on a policy with a realistic rule set (PII checks included)."""
    port = free_port()
    policy = work / "bench-policy.yaml"
    policy.write_text(
        BENCH_POLICY.format(
            base=f"http://127.0.0.1:{upstream.port}",
            plain=PLAIN_PREFIX,
            stream=STREAM_PREFIX,
            model=UPSTREAM_MODEL,
            chat=CHAT_MODEL,
            stream_route=STREAM_MODEL,
        )
    )
    argv = [
        sys.executable, "-m", "gateway", "serve", "--policy", str(policy), "--port", str(port),
        "--workers", "1", "--no-managed", "--ledger", str(work / "ledger.sqlite3"),
    ]  # fmt: skip
    server = Server("gateway", argv, port, cwd=REPO_ROOT, log=work / "gateway.log")
    server.start()
    plain, stream = _openai_endpoints(port)
    return Target("e", "hybrid-gateway (1 worker)", plain, stream, server)


LITELLM_CONFIG = """
model_list:
  - model_name: {chat}
    litellm_params: {{model: "openai/{model}", api_base: "{base}{plain}", api_key: "{key}"}}
  - model_name: {stream_model}
    litellm_params: {{model: "openai/{model}", api_base: "{base}{stream}", api_key: "{key}"}}
litellm_settings:
  telemetry: false
"""


def ensure_litellm(log: Callable[[str], None]) -> Path | None:
    """The LiteLLM proxy in its own virtualenv, installed with pip on first use; None if that fails."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    log(f"installing {LITELLM_PIN} into {LITELLM_VENV} (one time, a few minutes)")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = str(LITELLM_VENV / "bin" / "pip")
        subprocess.run([pip, "install", "-q", LITELLM_PIN], check=True, timeout=1200)
    except (subprocess.SubprocessError, OSError) as exc:
        log(f"LiteLLM install failed: {exc}")
        return None
    return exe if exe.exists() else None


def litellm(upstream: Server, work: Path, exe: Path) -> Target:
    port = free_port()
    config = work / "litellm.yaml"
    config.write_text(
        LITELLM_CONFIG.format(
            chat=CHAT_MODEL,
            stream_model=STREAM_MODEL,
            model=UPSTREAM_MODEL,
            base=f"http://127.0.0.1:{upstream.port}",
            plain=PLAIN_PREFIX,
            stream=STREAM_PREFIX,
            key=UPSTREAM_KEY,
        )
    )
    argv = [
        str(exe),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    # Offline and quiet: the bundled price map instead of a download, no telemetry, errors-only logs.
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
    server = Server("litellm", argv, port, env=env, cwd=work, log=work / "litellm.log")
    server.start(timeout_s=180)
    plain, stream = _openai_endpoints(port, authorization=f"Bearer {UPSTREAM_KEY}")
    return Target("c", "LiteLLM proxy 1.100.5 (1 worker)", plain, stream, server)


def ensure_portkey(log: Callable[[str], None]) -> Path | None:
    """Portkey's gateway from npm into bench/.node, installed on first use; None without node/npm."""
    entry = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if entry.exists():
        return entry
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        log("Portkey skipped: node/npm not installed")
        return None
    log(f"installing {PORTKEY_PIN} into {PORTKEY_DIR} (one time)")
    PORTKEY_DIR.mkdir(parents=True, exist_ok=True)
    package = PORTKEY_DIR / "package.json"
    if not package.exists():
        package.write_text('{"name": "bench-node", "private": true}\n')
    try:
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", PORTKEY_PIN], cwd=PORTKEY_DIR, check=True, timeout=600
        )
    except (subprocess.SubprocessError, OSError) as exc:
        log(f"Portkey install failed: {exc}")
        return None
    return entry if entry.exists() else None


def portkey(upstream: Server, work: Path, entry: Path) -> Target:
    port = free_port()
    node = shutil.which("node") or "node"
    server = Server(
        "portkey",
        [node, str(entry), f"--port={port}", "--headless"],
        port,
        env={"NODE_ENV": "production"},
        cwd=work,
        log=work / "portkey.log",
    )
    server.start()
    base = f"http://127.0.0.1:{upstream.port}"
    url = f"http://127.0.0.1:{port}/v1/chat/completions"

    def headers(prefix: str) -> dict[str, str]:
        return _json_headers(
            **{
                "x-portkey-provider": "openai",
                "x-portkey-custom-host": base + prefix,
                "authorization": f"Bearer {UPSTREAM_KEY}",
            }
        )

    return Target(
        "d",
        "Portkey gateway 1.15.2 (node)",
        Endpoint(url, request_body(UPSTREAM_MODEL), headers(PLAIN_PREFIX)),
        Endpoint(url, request_body(UPSTREAM_MODEL, stream=True), headers(STREAM_PREFIX)),
        server,
    )
