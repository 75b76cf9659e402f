#!/usr/bin/env bash
# Debian-packaged servers the tests use, installed with apt-get and run on loopback only.
# `start` installs what is missing and starts them; `stop` stops what `start` started.
# Today the suite needs none; issues that add Redis or PostgreSQL add them here.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  start|stop) ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
