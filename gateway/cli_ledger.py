"""`gateway keys ...` and `gateway report ...`: the commands that work on the ledger database."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from typing import Any

from gateway.database import Database
from gateway.keys import KeyStore
from gateway.ledger import recover_spool
from gateway.reports import GROUPS, closed_dependency, render, spend_report

DEFAULT_LEDGER = os.environ.get("GATEWAY_LEDGER", "var/ledger.sqlite3")


def add_parsers(sub: Any) -> None:
    keys = sub.add_parser("keys", help="create, list or revoke API keys")
    keys.add_argument("--ledger", default=DEFAULT_LEDGER, help="SQLite path or postgresql:// DSN")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    create = ksub.add_parser("create", help="issue a key (its plaintext is shown once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--daily-usd", type=float)
    create.add_argument("--monthly-usd", type=float)
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    ksub.add_parser("list", help="list keys (never their secrets)")
    revoke = ksub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    report = sub.add_parser(
        "report", help="spend per tenant/route/provider/deployment, or the closed-dependency audit"
    )
    report.add_argument("--ledger", default=DEFAULT_LEDGER)
    report.add_argument("--since", default=None, help="YYYY-MM-DD (UTC); default: the first of this month")
    report.add_argument("--until", default=None, help="YYYY-MM-DD (UTC), exclusive")
    report.add_argument("--by", choices=GROUPS, default="tenant")
    report.add_argument("--format", choices=["table", "csv", "json"], default="table")
    report.add_argument("--audit", metavar="POLICY", help="closed-dependency audit against this policy")


def run_keys(args: argparse.Namespace) -> int:
    db = Database(args.ledger)
    db.migrate()
    store = KeyStore(db)
    if args.keys_command == "create":
        key, plaintext = store.create(
            args.tenant,
            args.name,
            daily_usd=args.daily_usd,
            monthly_usd=args.monthly_usd,
            rpm=args.rpm,
            tpm=args.tpm,
        )
        print(f"key id {key.id} for tenant {key.tenant} ({key.name}); the key, shown only this once:")
        print(plaintext)
        return 0
    if args.keys_command == "revoke":
        if store.revoke(args.key_id):
            print(f"revoked {args.key_id}; running gateways stop accepting it within seconds")
            return 0
        print(f"no active key {args.key_id}", file=sys.stderr)
        return 1
    rows = [
        {
            "id": k.id,
            "tenant": k.tenant,
            "name": k.name,
            "created": _date(k.created),
            "revoked": _date(k.revoked) if k.revoked else None,
            "daily_usd": k.daily_usd,
            "monthly_usd": k.monthly_usd,
            "rpm": k.rpm,
            "tpm": k.tpm,
        }
        for k in store.list_keys()
    ]
    print(render(rows, "table"))
    return 0


def run_report(args: argparse.Namespace) -> int:
    db = Database(args.ledger)
    db.migrate()
    recover_spool(db)  # rows a stopped or crashed gateway left in its spool count too
    since = _timestamp(args.since) if args.since else _month_start()
    until = _timestamp(args.until) if args.until else None
    if args.audit:
        from gateway.policy_loader import PolicyError, load_policy

        try:
            policy = load_policy(args.audit)
        except PolicyError as exc:
            print(exc, file=sys.stderr)
            return 1
        audit = closed_dependency(db, policy, since, until)
        if args.format == "json":
            print(json.dumps(audit, indent=2))
        else:
            print(render(audit["routes"], args.format))
            if audit["image_break_even"]:
                print()
                print(render(audit["image_break_even"], args.format))
        return 0
    print(render(spend_report(db, args.by, since, until), args.format))
    return 0


def _timestamp(day: str) -> float:
    return dt.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=dt.UTC).timestamp()


def _month_start() -> float:
    now = dt.datetime.now(dt.UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


def _date(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M")
