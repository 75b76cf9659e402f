"""deploy/ artifacts, checked with the tools made for them (deploy/check.sh installs any that are missing).

The first test runs every check once (promtool, docker compose config, Helm's SDK lint + template,
kubernetes-validate, hadolint, the dashboard's JSON Schema); the others assert on its output, then make sure
the checkers really reject broken input, and that a ConfigMap-style symlink swap reaches the policy watcher.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.metrics import Metrics
from gateway.policy_store import PolicyStore

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TOOLS = Path(
    os.environ.get(
        "HG_DEPLOY_TOOLS",
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hybrid-gateway/deploy-tools",
    )
)
CHECKS = {
    "dockerfiles": ["hadolint", "gateway image dependencies resolve"],
    "prometheus": ["promtool check config", "promtool check rules", "promtool test rules", "alerts:"],
    "dashboard": ["dashboard JSON Schema", "grafana provisioning"],
    "compose": ["config -q", "gateway check deploy/compose/gateway/policy.yaml"],
    "helm": ["helm lint + helm template"],
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def check_output() -> str:
    result = subprocess.run(
        ["bash", str(DEPLOY / "check.sh"), "all"],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_deploy_check_passes(check_output: str, check: str) -> None:
    lines = check_output.splitlines()
    assert not [line for line in lines if line.startswith("FAIL")], check_output
    for needle in CHECKS[check]:
        assert any(line.startswith("ok: ") and needle in line for line in lines), (needle, check_output)


def test_no_prometheus_server_left_running(check_output: str) -> None:
    """Installing Debian's prometheus (for promtool) must not leave its server running."""
    out = subprocess.run(["pgrep", "-a", "-x", "prometheus"], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == "", out.stdout


def test_dashboard_checker_rejects_unknown_metric_and_bad_promql(check_output: str, tmp_path: Path) -> None:
    dash = json.loads((DEPLOY / "grafana/dashboards/hybrid-gateway.json").read_text())
    target = next(p for p in dash["panels"] if p["type"] == "timeseries")["targets"][0]
    target["expr"] = "sum(rate(gateway_requests_totl[5m])"  # misspelt metric, unbalanced parenthesis
    broken = tmp_path / "dash.json"
    broken.write_text(json.dumps(dash))
    result = subprocess.run(
        [
            sys.executable,
            str(DEPLOY / "grafana/check_dashboard.py"),
            "--dashboard",
            str(broken),
            "--promtool",
            shutil.which("promtool") or "promtool",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "gateway_requests_totl is not exported" in result.stderr
    assert "promtool rejects a dashboard expression" in result.stderr


def test_dashboard_schema_rejects_a_panel_without_targets(check_output: str, tmp_path: Path) -> None:
    dash = json.loads((DEPLOY / "grafana/dashboards/hybrid-gateway.json").read_text())
    del next(p for p in dash["panels"] if p["type"] == "stat")["targets"]
    broken = tmp_path / "dash.json"
    broken.write_text(json.dumps(dash))
    result = subprocess.run(
        [sys.executable, str(DEPLOY / "grafana/check_dashboard.py"), "--dashboard", str(broken)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and "'targets' is a required property" in result.stderr


def test_chart_checker_rejects_an_unknown_field(check_output: str, tmp_path: Path) -> None:
    chart = tmp_path / "hybrid-gateway"
    shutil.copytree(DEPLOY / "helm/hybrid-gateway", chart)
    service = chart / "templates/gateway-service.yaml"
    service.write_text(service.read_text().replace("spec:\n", "spec:\n  bogusField: 1\n", 1))
    result = subprocess.run(
        [
            str(TOOLS / "venv/bin/python"),
            str(DEPLOY / "helm/check_chart.py"),
            str(chart),
            "--gateway",
            str(ROOT / ".venv/bin/gateway"),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 1
    assert "Service/hg-hybrid-gateway" in result.stderr and "bogusField" in result.stderr


def test_every_alert_has_summary_description_and_severity() -> None:
    doc = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    alerts = {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}
    for name in (
        "GatewayBudgetNearlySpent",
        "GatewayDeploymentCircuitOpen",
        "GatewayDeploymentDeprecationSoon",
        "GatewayDeploymentRetired",
        "GatewayPrivacyBlock",
        "GatewayHighFallbackRate",
        "GatewayHighOverheadP99",
    ):
        assert name in alerts
    for name, rule in alerts.items():
        assert rule["annotations"]["summary"].strip() and rule["annotations"]["description"].strip(), name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
    assert alerts["GatewayDeploymentCircuitOpen"]["for"] == "5m"


async def test_configmap_symlink_swap_reaches_the_policy_watcher(tmp_path: Path) -> None:
    """Kubernetes updates a ConfigMap volume by writing a new timestamped directory and renaming the `..data`
    symlink onto it; policy.yaml is a symlink through `..data`. The gateway's mtime/size poll must see that."""
    text = (ROOT / "deploy/compose/gateway/policy.yaml").read_text()
    first = tmp_path / "..2026_01_01_00_00_00.000000001"
    first.mkdir()
    (first / "policy.yaml").write_text(text)
    (tmp_path / "..data").symlink_to(first.name)
    (tmp_path / "policy.yaml").symlink_to("..data/policy.yaml")
    store = PolicyStore.from_file(tmp_path / "policy.yaml", Metrics())
    watcher = asyncio.create_task(store.watch(interval_s=0.02))
    try:
        assert store.current.policy.routes["chat"].strategy == "ordered"
        second = tmp_path / "..2026_01_01_00_01_00.000000002"
        second.mkdir()
        (second / "policy.yaml").write_text(text.replace("strategy: ordered", "strategy: cheapest"))
        (tmp_path / "..data_tmp").symlink_to(second.name)
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")  # the kubelet's atomic swap
        shutil.rmtree(first)
        deadline = asyncio.get_running_loop().time() + 5
        while store.current.policy.routes["chat"].strategy != "cheapest":
            assert asyncio.get_running_loop().time() < deadline, "the swap was not noticed"
            await asyncio.sleep(0.02)
    finally:
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher
        await store.aclose()
