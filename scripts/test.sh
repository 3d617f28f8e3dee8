#!/usr/bin/env bash
# `make test`: installs everything the suite needs, starts PostgreSQL/Redis if they are down,
# then runs `make lint` (ruff check + ruff format --check) and the whole pytest suite, in parallel.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv requirements-dev.txt

source scripts/services.sh
ensure_services "${TEST_REDIS_URL:-redis://127.0.0.1:6379/13}"
if ! command -v chromium >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser tests ..."
  apt_install chromium
fi

if [ ! -x /usr/sbin/dovecot ]; then
  echo "Installing Debian's dovecot-imapd for the bounce-mailbox tests (a throwaway server per test) ..."
  # Only the binaries: the tests start their own instance; the package's system service is not needed.
  apt_install dovecot-imapd
fi

make --no-print-directory lint  # ruff check, ruff format --check, lint-imports (the layers in pyproject.toml)
# In parallel (pytest-xdist): each worker process has its own test database and Redis db
# (config/settings/test.py), the slow tests are dealt out first (tests/conftest.py). Four workers on
# two cores: most of the slow tests wait on Celery workers, servers and browsers they started.
# `-n 0` (or any -n) after it in the arguments wins.
.venv/bin/python -m pytest -n "${TEST_WORKERS:-4}" "$@"
