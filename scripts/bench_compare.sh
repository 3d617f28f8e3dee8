#!/usr/bin/env bash
# `make bench-compare REV=<git rev>`: bench_digests on REV and on this working tree, alternately
# (docs/benchmark.md). Same installs as `make bench`; REV gets a worktree and a .venv of its own.
# usage: scripts/bench_compare.sh REV [bench_compare options]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench_setup.sh
DJANGO_SETTINGS_MODULE=config.settings.bench .venv/bin/python manage.py bench_compare "$@"
