"""helm lint + helm template of deploy/helm/hybrid-gateway, the manifests validated (run by deploy/check.sh).

Runs in the deploy-tools venv: helm-python-sdk (Helm's own Go SDK, v4, through libhelm_c; no helm binary)
and kubernetes-validate (the Kubernetes OpenAPI schemas, strict: unknown fields are errors).
For each scenario of values: lint (strict), render, check that the expected kinds are there, validate every
built-in object, validate the ServiceMonitor (a CRD that kubernetes-validate has no schema for) against the
few fields of monitoring.coreos.com/v1 it uses, and load the rendered policy with `gateway check`.

    python deploy/helm/check_chart.py deploy/helm/hybrid-gateway --gateway .venv/bin/gateway --out DIR
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

KUBE_VERSION = "1.30.0"
ROOT = Path(__file__).resolve().parents[2]

SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "required": ["matchLabels"],
                    "properties": {
                        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        },
                    },
                },
            },
        },
    },
}

SCENARIOS: list[tuple[str, dict[str, Any], dict[str, int]]] = [
    (
        "defaults",
        {},
        {
            "Deployment": 2,
            "Service": 2,
            "HorizontalPodAutoscaler": 1,
            "PodDisruptionBudget": 1,
            "ConfigMap": 1,
            "Secret": 1,
        },
    ),
    (
        "keys-and-monitoring",
        {
            "secrets": {
                "adminKey": "admin-test",
                "providerKeys": {"OPENAI_API_KEY": "sk-test", "FAL_KEY": "k"},
            },
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "localBackend": {"modelCache": {"existingClaim": "hf-cache"}},
            "redis": {"url": "redis://redis-master:6379/0"},
        },
        {
            "Deployment": 2,
            "Service": 2,
            "HorizontalPodAutoscaler": 1,
            "PodDisruptionBudget": 1,
            "ConfigMap": 1,
            "Secret": 1,
            "ServiceMonitor": 1,
        },
    ),
    (
        "closed-only-existing-secret",
        {
            "localBackend": {"enabled": False},
            "gateway": {
                "autoscaling": {"enabled": False},
                "podDisruptionBudget": {"enabled": False},
                "replicaCount": 3,
                "env": {"LOG_LEVEL": "info"},
            },
            "secrets": {"existingSecret": "my-provider-keys"},
            "policy": (ROOT / "policies/examples/free-tier-cost-cap.yaml").read_text(),
        },
        {"Deployment": 1, "Service": 1, "ConfigMap": 1},
    ),
]


def lint(chart: Path, values: dict[str, Any]) -> list[str]:
    report = helm.lint(str(chart), values, strict=True, kube_version=f"v{KUBE_VERSION}")
    problems = [
        f"lint: {m['path']}: {m['error']}" for m in report.get("messages", []) if m.get("severity", 0) >= 2
    ]
    return problems + [f"lint: {e}" for e in report.get("errors", [])]


def render(chart: Path, values: dict[str, Any]) -> dict[str, str]:
    with helm.Chart.load(str(chart)) as c:
        return dict(c.render(values, name="hg", namespace="llm"))


def check_scenario(
    chart: Path, name: str, *, values: dict[str, Any], expected: dict[str, int], gateway: str, out: Path
) -> list[str]:
    errors = [f"{name}: {p}" for p in lint(chart, values)]
    rendered = render(chart, values)
    docs: list[dict[str, Any]] = []
    notes = ""
    (out / name).mkdir(parents=True, exist_ok=True)
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            notes = text
            continue
        if text.strip():
            (out / name / Path(template).name).write_text(text)
        docs += [d for d in yaml.safe_load_all(text) if d]
    if not notes.strip():
        errors.append(f"{name}: NOTES.txt renders empty")
    kinds = Counter(d["kind"] for d in docs)
    if dict(kinds) != expected:
        errors.append(f"{name}: rendered kinds {dict(kinds)}, expected {expected}")
    for doc in docs:
        where = f"{name}: {doc['kind']}/{doc.get('metadata', {}).get('name')}"
        if doc["kind"] == "ServiceMonitor":
            for err in jsonschema.Draft202012Validator(SERVICE_MONITOR_SCHEMA).iter_errors(doc):
                errors.append(f"{where}: {err.message}")
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            errors.append(f"{where}: /{'/'.join(map(str, err.path))}: {err.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{where}: no Kubernetes {KUBE_VERSION} schema for {doc['apiVersion']}")
    errors += check_gateway_pod(name, docs)
    errors += check_policy(name, docs, gateway, out)
    return errors


def check_policy(name: str, docs: list[dict[str, Any]], gateway: str, out: Path) -> list[str]:
    """The rendered policy ConfigMap must load: `gateway check` on its policy.yaml."""
    errors = []
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            policy = out / name / "policy.yaml"
            policy.write_text(doc["data"]["policy.yaml"])
            result = subprocess.run(
                [gateway, "check", str(policy)], capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                errors.append(
                    f"{name}: rendered policy fails `gateway check`:\n{result.stdout}{result.stderr}"
                )
    return errors


def check_gateway_pod(name: str, docs: list[dict[str, Any]]) -> list[str]:
    """What the chart promises beyond the schema: policy mounted as a directory, local backend on a GPU."""
    errors = []
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        container = pod["containers"][0]
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
        if container["name"] == "gateway":
            policy = mounts.get("/etc/hybrid-gateway")
            if policy is None or "subPath" in policy:
                errors.append(f"{name}: gateway must mount the policy ConfigMap as a directory (no subPath)")
            if "/etc/hybrid-gateway/policy.yaml" not in container["args"]:
                errors.append(f"{name}: gateway args do not name /etc/hybrid-gateway/policy.yaml")
        if container["name"] == "local-backend" and "nvidia.com/gpu" not in container["resources"].get(
            "limits", {}
        ):
            errors.append(f"{name}: local backend has no nvidia.com/gpu limit")
    return errors


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("chart", type=Path)
    ap.add_argument("--gateway", required=True, help="the `gateway` console script, for `gateway check`")
    ap.add_argument("--out", type=Path, required=True, help="where to write the rendered manifests")
    args = ap.parse_args()
    errors: list[str] = []
    for name, values, expected in SCENARIOS:
        errors += check_scenario(
            args.chart, name, values=values, expected=expected, gateway=args.gateway, out=args.out
        )
    for e in errors:
        print(e, file=sys.stderr)
    if not errors:
        print(
            f"helm SDK {helm.helm_sdk_version()}: {len(SCENARIOS)} value sets linted, rendered and valid "
            f"for Kubernetes {KUBE_VERSION}"
        )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
