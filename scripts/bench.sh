#!/usr/bin/env bash
# `make bench`: the digest benchmark (docs/benchmark.md). Installs what it needs, starts
# PostgreSQL/Redis if they are down, then runs bench_digests with the given arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench_setup.sh

PATH="$PATH:/usr/sbin" DJANGO_SETTINGS_MODULE=config.settings.bench .venv/bin/python manage.py bench_digests "$@"
