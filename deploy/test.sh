#!/usr/bin/env bash
# Set up everything the tests need, then run them. Works on a fresh machine with nothing but Python 3.11.
# Extra arguments go to pytest (e.g. `bash deploy/test.sh tests/gateway -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/bootstrap.sh
bash deploy/services.sh start
trap 'bash deploy/services.sh stop' EXIT
set -a; . var/services.env; set +a
export HF_HUB_OFFLINE=1 LITELLM_LOCAL_MODEL_COST_MAP=True
.venv/bin/ruff check gateway providers local_backend
.venv/bin/python -m pytest "$@"
