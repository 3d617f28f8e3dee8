# Sourced by test.sh, bench.sh and run.sh: start the local PostgreSQL and Redis when they are down,
# install Debian packages.
# usage: ensure_services REDIS_URL    (PostgreSQL and Redis, for the tests and the benchmark)
#        ensure_redis REDIS_URL       (Redis only; returns 1 if it still does not answer)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# apt-get fails at once when another process holds the dpkg lock (another install,
# unattended-upgrades); with this option `install` waits for up to 10 minutes instead.
APT_GET=(apt-get -o DPkg::Lock::Timeout=600)
APT_LOCK_WAIT_SECONDS=600

# usage: apt_install PACKAGE...   (Debian packages the tests or the benchmark need)
apt_install() {
  apt_update || return 1
  as_root env DEBIAN_FRONTEND=noninteractive "${APT_GET[@]}" install -y -qq "$@" >/dev/null
}

# `update` takes the package lists' lock, which DPkg::Lock::Timeout does not cover (apt 2.6 fails
# at once): retried while another apt holds it, for as long.
apt_update() {
  local waited=0 out
  until out=$(as_root "${APT_GET[@]}" update -qq 2>&1); do
    if ! grep -q "Could not get lock" <<<"$out" || [ "$waited" -ge "$APT_LOCK_WAIT_SECONDS" ]; then
      echo "$out" >&2
      return 1
    fi
    [ "$waited" -eq 0 ] && echo "Waiting for another package manager to finish ..."
    sleep 2
    waited=$((waited + 2))
  done
}

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

# usage: run_env_write SITE_URL   (in the checkout's top directory)
# Records the address `make run` serves, so that commands started later from any shell of this
# checkout (`manage.py send_digests --now`) link to it: config/settings/local.py reads var/run.env.
run_env_write() {
  mkdir -p var
  printf 'SITE_URL=%s\n' "$1" >var/run.env
}
