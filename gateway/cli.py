"""`gateway`: serve, check, explain.

gateway serve --policy policies/default.yaml --port 8080 [--workers 2]
gateway check policies/default.yaml
gateway explain policies/default.yaml --request req.json [-H x-data-classification=confidential]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from gateway import cli_ledger
from gateway.policy_loader import PolicyError, load_policy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gateway", description="hybrid-gateway: one endpoint for closed and open models"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--policy", default=os.environ.get("GATEWAY_POLICY", "policies/default.yaml"))
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--ledger",
        default=os.environ.get("GATEWAY_LEDGER", "var/ledger.sqlite3"),
        help="SQLite path (default) or postgresql:// DSN",
    )
    serve.add_argument(
        "--redis",
        default=os.environ.get("GATEWAY_REDIS_URL", ""),
        help="redis:// URL shared by replicas (breakers, rate limits, budgets); default: in-process",
    )
    serve.add_argument("--no-managed", action="store_true", help="do not start managed local backends")
    serve.add_argument("--access-log", action="store_true")
    check = sub.add_parser("check", help="validate a policy file")
    check.add_argument("policy")
    explain = sub.add_parser("explain", help="show how a request would be routed")
    explain.add_argument("policy")
    explain.add_argument("--request", required=True, help="a JSON file with the OpenAI request body")
    explain.add_argument("-H", "--header", action="append", default=[], help="request header as name=value")
    explain.add_argument(
        "--tenant", help="the caller's tenant (default: the x-tenant header, else 'default')"
    )
    cli_ledger.add_parsers(sub)
    args = parser.parse_args(argv)
    handlers = {"keys": cli_ledger.run_keys, "report": cli_ledger.run_report}
    handler = {"serve": _serve, "check": _check, "explain": _explain, **handlers}[args.command]
    return handler(args)


def _check(args: argparse.Namespace) -> int:
    from gateway.policy_check import check_policy

    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{args.policy}: cannot read: {exc.strerror}", file=sys.stderr)
        return 1
    errors, warnings = check_policy(policy, dt.date.today())
    for w in warnings:
        print(f"{args.policy}: warning: {w}")
    for e in errors:
        print(f"{args.policy}: error: {e}", file=sys.stderr)
    if errors:
        return 1
    print(
        f"{args.policy}: ok ({len(policy.routes)} routes, {len(policy.deployments)} deployments, "
        f"{len(policy.providers)} providers)"
    )
    return 0


def _explain(args: argparse.Namespace) -> int:
    from gateway.auth import DEFAULT_TENANT
    from gateway.policy_store import build_detector
    from gateway.serving import explain_plan

    try:
        policy = load_policy(args.policy)
        body: Any = json.loads(Path(args.request).read_text())
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (OSError, json.JSONDecodeError) as exc:
        print(f"{args.request}: {exc}", file=sys.stderr)
        return 1
    route = policy.routes.get(str(body.get("model"))) if isinstance(body, dict) else None
    if route is None:
        print(
            f"{args.request}: its model is not a route; routes: {', '.join(policy.routes)}", file=sys.stderr
        )
        return 1
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition("=") for h in args.header)}
    # A fresh gateway's view: no breaker open, nothing retired at run time; deprecation dates do apply.
    detector = build_detector(policy)
    today = dt.date.today()
    tenant = args.tenant or headers.get("x-tenant") or DEFAULT_TENANT  # as a keyless gateway would see it
    result = explain_plan(
        policy, detector, route, body, headers=headers, tenant=tenant, health={}, today=today
    )
    print(json.dumps(result, indent=2))
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        print(exc, file=sys.stderr)
        return 1
    os.environ["GATEWAY_POLICY"] = str(Path(args.policy).resolve())
    os.environ["GATEWAY_LEDGER"] = args.ledger if "://" in args.ledger else str(Path(args.ledger).resolve())
    if args.redis:
        os.environ["GATEWAY_REDIS_URL"] = args.redis
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gateway-metrics-")
    import uvicorn

    from gateway.managed import managed_backends

    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; with these handlers that becomes a
    # normal exit, so managed backends are stopped and the exit status is 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    backends = contextlib.nullcontext() if args.no_managed else managed_backends(policy)
    with backends:
        uvicorn.run(
            "gateway.app:app_from_env",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            loop="uvloop",
            http="httptools",
            access_log=args.access_log,
            log_level="info",
        )
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main())
