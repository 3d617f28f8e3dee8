#!/usr/bin/env bash
# `make faults`: the fault suite (docs/faults.md). Installs what it needs, then runs
# bench_faults with the given arguments. It starts its own PostgreSQL cluster and redis-server on
# free ports and breaks those; the machine's own servers are left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv requirements-dev.txt
DJANGO_SETTINGS_MODULE=config.settings.bench .venv/bin/python manage.py bench_faults "$@"
