# Sourced by test.sh, bench.sh and run.sh: start the local PostgreSQL and Redis when they are down.
# usage: ensure_services REDIS_URL    (PostgreSQL and Redis, for the tests and the benchmark)
#        ensure_redis REDIS_URL       (Redis only; returns 1 if it still does not answer)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_services() {
  local redis_url=$1
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    echo "Starting PostgreSQL ..."
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  fi
  ensure_redis "$redis_url"
}

ensure_redis() {
  local redis_url=$1
  .venv/bin/python scripts/redis_ping.py "$redis_url" && return 0
  # Only the default local address is ours to start; anything else is the operator's server.
  case "$redis_url" in
    redis://127.0.0.1:6379/*) ;;
    *) return 1 ;;
  esac
  command -v redis-server >/dev/null 2>&1 || return 1
  echo "Redis is not running; starting a local one (nothing saved to disk)."
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  sleep 1
  .venv/bin/python scripts/redis_ping.py "$redis_url"
}
