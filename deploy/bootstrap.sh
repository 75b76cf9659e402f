#!/usr/bin/env bash
# Create .venv and install the pinned dependencies. Idempotent: re-runs only when requirements.lock changes.
# torch is installed first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.hybrid-gateway-lock
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -m pip install -q torch==2.13.0 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -m pip install -q -r requirements.lock 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -m pip install -q --no-deps -e . 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import torch, gateway, providers, local_backend" >/dev/null
  echo "$want" > "$stamp"
fi
