#!/usr/bin/env bash
# Set up and run the gateway on policies/default.yaml (local open weights, no API keys needed).
# The default policy marks the local backend as managed, so this also starts it on 127.0.0.1:8100.
# Extra arguments go to `gateway serve` (e.g. `bash deploy/run.sh --port 9000`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/bootstrap.sh
export LITELLM_LOCAL_MODEL_COST_MAP=True
exec .venv/bin/gateway serve --policy policies/default.yaml --host 127.0.0.1 --port 8080 "$@"
