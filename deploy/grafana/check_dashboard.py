"""Checks for the Grafana dashboard, its provisioning and the Prometheus alerts (run by deploy/check.sh).

--dashboard FILE --schema FILE --promtool PATH
    JSON Schema (deploy/grafana/dashboard.schema.json) with jsonschema; unique panel ids and refIds; panels
    inside the 24-column grid and not overlapping; every gateway_* metric named exists in gateway/metrics.py
    (or is one the budgets work adds); every metric the dashboard must show is shown; and every PromQL
    expression, with Grafana's variables substituted, parses: they are written as recording rules into a
    temporary file and checked by `promtool check rules`.
--alerts FILE
    every alert has summary and description annotations and a severity label; metric names exist.
--provisioning DIR
    datasource and dashboard-provider files have the fields Grafana reads, and agree with the dashboard.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

# Budget gauges (labels tenant, scope, period); kept here so the checks pass on builds without them.
UPCOMING = {"gateway_budget_remaining_usd", "gateway_budget_limit_usd"}
MUST_SHOW = {
    "gateway_cost_usd_total",
    "gateway_requests_total",
    "gateway_fallbacks_total",
    "gateway_request_duration_seconds_bucket",
    "gateway_overhead_seconds_bucket",
    "gateway_deployment_state",
    "gateway_budget_remaining_usd",
    "gateway_upstream_errors_total",
    "gateway_privacy_blocks_total",
}
# Values that make Grafana's variables valid PromQL for the parse check.
VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$tenant": ".*",
    "$route": ".*",
    "$open_deployments": ".*-local",
}
METRIC = re.compile(r"\b(gateway_[a-z0-9_]+)\b")


def known_metrics() -> set[str]:
    from gateway.metrics import Metrics

    names: set[str] = set()
    for family in Metrics().registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
        names.update(family.name + s for s in suffixes.get(family.type, [""]))
    return names | UPCOMING


def unknown_metrics(exprs: list[str], known: set[str]) -> list[str]:
    return sorted({m for e in exprs for m in METRIC.findall(e)} - known)


def check_dashboard(path: Path, schema_path: Path, promtool: str) -> list[str]:
    import jsonschema

    errors: list[str] = []
    dash = json.loads(path.read_text())
    schema = json.loads(schema_path.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for err in sorted(validator.iter_errors(dash), key=lambda e: list(e.absolute_path)):
        errors.append(f"{path}: schema: /{'/'.join(map(str, err.absolute_path))}: {err.message}")
    if errors:
        return errors
    errors += check_layout(path, dash["panels"])
    exprs = [
        (f"panel {p['id']} {t['refId']}", t["expr"]) for p in dash["panels"] for t in p.get("targets", [])
    ]
    variables = {v["name"] for v in dash["templating"]["list"]}
    for where, expr in exprs:
        for used in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expr):
            if not used.startswith("__") and used not in variables:
                errors.append(f"{path}: {where}: variable ${used} is not defined")
    known = known_metrics()
    for name in unknown_metrics([e for _, e in exprs], known):
        errors.append(f"{path}: metric {name} is not exported by gateway/metrics.py")
    shown = {m for _, e in exprs for m in METRIC.findall(e)}
    for name in sorted(MUST_SHOW - shown):
        errors.append(f"{path}: no panel shows {name}")
    errors += promtool_parse(exprs, promtool)
    return errors


def check_layout(path: Path, panels: list[dict[str, Any]]) -> list[str]:
    """Unique ids and refIds; every panel inside the 24-column grid, none overlapping another."""
    errors: list[str] = []
    ids = [p["id"] for p in panels]
    if len(ids) != len(set(ids)):
        errors.append(f"{path}: duplicate panel ids")
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        if g["x"] + g["w"] > 24:
            errors.append(f"{path}: panel {p['title']!r} runs past column 24")
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        clash = sorted({cells[c] for c in mine if c in cells})
        if clash:
            errors.append(f"{path}: panel {p['title']!r} overlaps {', '.join(map(repr, clash))}")
        cells.update(dict.fromkeys(mine, p["title"]))
        refs = [t["refId"] for t in p.get("targets", [])]
        if len(refs) != len(set(refs)):
            errors.append(f"{path}: panel {p['title']!r} repeats a refId")
    return errors


def promtool_parse(exprs: list[tuple[str, str]], promtool: str) -> list[str]:
    rules = []
    for i, (where, expr) in enumerate(exprs):
        promql = expr
        for var, value in VARIABLES.items():
            promql = promql.replace(var, value)
        rules.append({"record": f"dashboard_check:expr_{i}", "expr": promql, "labels": {"where": where}})
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump({"groups": [{"name": "dashboard-exprs", "rules": rules}]}, f)
    try:
        out = subprocess.run(
            [promtool, "check", "rules", f.name], capture_output=True, text=True, check=False
        )
    finally:
        Path(f.name).unlink()
    if out.returncode != 0:
        return [f"promtool rejects a dashboard expression:\n{out.stdout}{out.stderr}"]
    return []


def check_alerts(path: Path) -> list[str]:
    errors: list[str] = []
    doc = yaml.safe_load(path.read_text())
    exprs = []
    alerts = 0
    for group in doc["groups"]:
        for rule in group["rules"]:
            exprs.append(rule["expr"])
            if "alert" not in rule:
                continue
            alerts += 1
            ann = rule.get("annotations", {})
            for key in ("summary", "description"):
                if not str(ann.get(key, "")).strip():
                    errors.append(f"{path}: {rule['alert']}: no {key} annotation")
            if rule.get("labels", {}).get("severity") not in {"info", "warning", "critical"}:
                errors.append(f"{path}: {rule['alert']}: severity label must be info, warning or critical")
    if alerts == 0:
        errors.append(f"{path}: no alerts")
    for name in unknown_metrics(exprs, known_metrics()):
        errors.append(f"{path}: metric {name} is not exported by gateway/metrics.py")
    return errors


def check_provisioning(root: Path, dashboard: Path) -> list[str]:
    errors: list[str] = []
    ds = yaml.safe_load((root / "datasources" / "prometheus.yaml").read_text())
    prov = yaml.safe_load((root / "dashboards" / "hybrid-gateway.yaml").read_text())
    if ds.get("apiVersion") != 1 or prov.get("apiVersion") != 1:
        errors.append(f"{root}: provisioning files need apiVersion: 1")
    sources = ds.get("datasources") or []
    if not any(s.get("type") == "prometheus" and s.get("uid") and s.get("url") for s in sources):
        errors.append(f"{root}: no prometheus datasource with uid and url")
    providers = prov.get("providers") or []
    if not any(p.get("type") == "file" and (p.get("options") or {}).get("path") for p in providers):
        errors.append(f"{root}: no file dashboard provider with options.path")
    dash = json.loads(dashboard.read_text())
    default = next((v for v in dash["templating"]["list"] if v["type"] == "datasource"), None)
    uids = {s.get("uid") for s in sources}
    if default is None or default.get("current", {}).get("value") not in uids:
        errors.append(
            f"{dashboard}: the datasource variable does not default to a provisioned datasource uid"
        )
    return errors


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dashboard", type=Path)
    ap.add_argument("--schema", type=Path)
    ap.add_argument("--promtool", default="promtool")
    ap.add_argument("--alerts", type=Path)
    ap.add_argument("--provisioning", type=Path)
    args = ap.parse_args()
    here = Path(__file__).resolve().parent
    errors: list[str] = []
    if args.dashboard:
        errors += check_dashboard(
            args.dashboard, args.schema or here / "dashboard.schema.json", args.promtool
        )
    if args.alerts:
        errors += check_alerts(args.alerts)
    if args.provisioning:
        errors += check_provisioning(args.provisioning, here / "dashboards" / "hybrid-gateway.json")
    for e in errors:
        print(e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
