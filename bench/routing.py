"""Microbenchmark of a routing decision: `gateway.routing.plan_route` on a large policy.

    python -m bench.routing [--calls 20000] [--smoke]

The policy has 1,000 chat deployments on 10 providers (mixed open/closed, local/vendor, prices, quality,
latency) and one route per scenario carrying 100 rules: conditions on tenant, classification, quality
label and PII, of which the benchmark request matches 10 (4 `require`, 6 `prefer`), so every rule is
evaluated and the matching ones filter and reorder. Scenarios differ only in how many of the 1,000
deployments the route lists as candidates (10, 100, 1,000), because routing's cost grows with the
candidates it must price and check, not with deployments it never looks at.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from typing import Any

import orjson

from gateway.policy import Classification, Modality, Policy
from gateway.policy_loader import parse_policy
from gateway.routing import plan_route
from gateway.signals import Signals, UsageEstimate

DEPLOYMENTS = 1000
RULES = 100
CANDIDATE_COUNTS = (10, 100, 1000)
TENANT = "acme"


def _deployment(i: int) -> dict[str, Any]:
    local = i % 4 == 0
    dep: dict[str, Any] = {
        "provider": f"p{i % 10}",
        "model": f"model-{i}",
        "modality": "chat",
        "openness": "open" if local else "closed",
        "data": {
            "location": "local" if local else "vendor",
            "region": ["eu", "us"][i % 2],
            "retains": i % 7 == 0,
        },
        "quality": 40 + (i * 37) % 60,
        "latency_ms": 100 + (i * 13) % 900,
        "context_window": 8000 * (1 + i % 16),
    }
    if local:
        dep["est_device_seconds"] = 0.5 + (i % 5) / 2
    else:
        dep["price"] = {"input_per_mtok": 0.1 + (i % 50) / 10, "output_per_mtok": 0.4 + (i % 50) / 2.5}
    return dep


def _rule(i: int) -> dict[str, Any]:
    """Every tenth rule matches the benchmark request (tenant acme, internal, no PII, no quality label)."""
    matches = i % 10 == 0
    when: dict[str, Any] = (
        {"tenant": [TENANT, "other"], "classification": ["internal", "public"]}
        if matches
        else [
            {"tenant": [f"tenant-{i}"]},
            {"classification": "confidential"},
            {"quality": ["draft", "hero"]},
            {"pii": True},
        ][i % 4]
    )
    rule: dict[str, Any] = {"name": f"rule-{i}", "when": when}
    if matches and (i // 10) % 5 in (0, 3):
        rule["require"] = {"min_quality": 30 + i // 10, "no_retention": i % 20 == 0}
    elif matches:
        rule["prefer"] = {"regions": ["eu"]} if (i // 10) % 2 else "cheapest"
    else:
        rule["require"] = {"data_location": ["local", "on_prem"], "openness": "open"}
    return rule


def build_policy() -> Policy:
    providers: dict[str, Any] = {
        f"p{n}": {"kind": "openai_compatible", "base_url": f"http://127.0.0.1:{9000 + n}/v1"}
        for n in range(10)
    }
    for n in range(0, 10, 4):  # the providers that host local deployments price by the hour
        providers[f"p{n}"]["usd_per_hour"] = 2.0 + n
    deployments = {f"d{i}": _deployment(i) for i in range(DEPLOYMENTS)}
    rules = [_rule(i) for i in range(RULES)]
    routes = {
        f"route-{count}": {
            "candidates": [f"d{i}" for i in range(count)],
            "strategy": "best_quality",
            "rules": rules,
        }
        for count in CANDIDATE_COUNTS
    }
    policy_json = orjson.dumps(
        {"version": 1, "providers": providers, "deployments": deployments, "routes": routes}
    )
    return parse_policy(policy_json.decode(), "bench-routing.yaml")  # JSON is YAML: the real loader runs


def signals() -> Signals:
    return Signals(
        classification=Classification.INTERNAL,
        pii=frozenset(),
        quality=None,
        min_quality=None,
        max_cost_usd=None,
        modality=Modality.CHAT,
        tenant=TENANT,
        estimate=UsageEstimate(prompt_tokens=400, output_tokens=256),
    )


def time_calls(policy: Policy, route_name: str, calls: int) -> list[float]:
    """Microseconds per plan_route call, one measurement per call."""
    route, sig, today = policy.routes[route_name], signals(), dt.date(2026, 1, 1)
    for _ in range(min(200, calls)):  # warm-up
        plan_route(route, sig, policy, health={}, today=today)
    out: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        started = clock()
        plan_route(route, sig, policy, health={}, today=today)
        out.append((clock() - started) / 1000.0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__)
    parser.add_argument(
        "--calls", type=int, default=20_000, help="calls per scenario (a tenth for 1,000 candidates)"
    )
    parser.add_argument("--smoke", action="store_true", help="200 calls per scenario")
    args = parser.parse_args(argv)
    calls = 200 if args.smoke else args.calls
    policy = build_policy()
    print(
        f"plan_route, {DEPLOYMENTS} deployments, {RULES} rules on the route (10 match), {calls} calls per scenario"
    )
    print("| candidates on the route | median µs | p99 µs | plan length |")
    print("|---:|---:|---:|---:|")
    for count in CANDIDATE_COUNTS:
        n = calls if count < 1000 else max(100, calls // 10)
        times = sorted(time_calls(policy, f"route-{count}", n))
        plan = plan_route(
            policy.routes[f"route-{count}"], signals(), policy, health={}, today=dt.date(2026, 1, 1)
        )
        p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
        print(f"| {count} | {statistics.median(times):.1f} | {p99:.1f} | {len(plan.order)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
