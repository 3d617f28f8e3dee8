#!/usr/bin/env bash
# `make bench`: the digest benchmark (README, "Benchmark"). Installs what it needs, starts
# PostgreSQL/Redis if they are down, then runs bench_digests with the given arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv requirements-dev.txt

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "Starting PostgreSQL ..."
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
fi
if ! .venv/bin/python scripts/redis_ping.py "redis://127.0.0.1:6379/14"; then
  echo "Starting Redis ..."
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  sleep 1
fi
# Postfix's smtp-sink receives the digests (a C SMTP server made for throughput tests). Installed
# without configuring or starting Postfix itself. Without it the benchmark falls back to aiosmtpd,
# which costs about 1.5 ms of CPU per message on the same cores as the workers.
if ! command -v smtp-sink >/dev/null 2>&1 && [ ! -x /usr/sbin/smtp-sink ]; then
  echo "Installing Postfix's smtp-sink ..."
  if as_root sh -c 'echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections &&
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null'; then
    :
  else
    echo "Could not install postfix; using aiosmtpd as the SMTP server." >&2
  fi
fi

PATH="$PATH:/usr/sbin" DJANGO_SETTINGS_MODULE=config.settings.bench .venv/bin/python manage.py bench_digests "$@"
