#!/usr/bin/env bash
# `make run`: virtualenv, requirements, migrations, sample papers, then web + worker + beat.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv requirements-local.txt

export DJANGO_SETTINGS_MODULE=config.settings.local
export WEB_PORT=${WEB_PORT:-8000}
export SITE_URL=${SITE_URL:-http://127.0.0.1:$WEB_PORT}
mkdir -p var
.venv/bin/python scripts/port_free.py "$WEB_PORT"

source scripts/services.sh
run_env_write "$SITE_URL"
redis_url=${REDIS_URL:-redis://127.0.0.1:6379/0}
if [ -z "${CELERY_BROKER_URL:-}" ] && ! ensure_redis "$redis_url"; then
  echo "!! Redis is not reachable at $redis_url."
  echo "!! Falling back to Celery's filesystem broker in var/broker/ (one machine only)."
  echo "!! For production set REDIS_URL to a running Redis; see docs/operations.md, 'Running in production'."
  export CELERY_BROKER_URL=filesystem://
fi

.venv/bin/python manage.py migrate --noinput -v0
.venv/bin/python manage.py collectstatic --noinput -v0
echo "Loading the sample papers ..."
.venv/bin/python manage.py ingest_papers papers/sample_data --quiet
.venv/bin/python manage.py ensure_local_admin

cat <<BANNER

  Paper Digest is starting:
    site     $SITE_URL/            (subscribe here)
    outbox   $SITE_URL/dev/outbox/ (every email the app sends, readable without SMTP)
    admin    $SITE_URL/admin/      (user admin, password admin; local only)
  Ctrl-C stops web, worker and beat. Another port: make run WEB_PORT=8001

BANNER
exec .venv/bin/honcho -f Procfile.dev start
