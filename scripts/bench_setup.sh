# Sourced by bench.sh and bench_compare.sh: the packages, services and SMTP sink the benchmark needs.
source scripts/venv.sh
ensure_venv requirements-dev.txt

source scripts/services.sh
ensure_services "redis://127.0.0.1:6379/14"
# Postfix's smtp-sink receives the digests (a C SMTP server made for throughput tests). Installed
# without configuring or starting Postfix itself. Without it the benchmark falls back to aiosmtpd,
# which costs about 1.5 ms of CPU per message on the same cores as the workers.
if ! command -v smtp-sink >/dev/null 2>&1 && [ ! -x /usr/sbin/smtp-sink ]; then
  echo "Installing Postfix's smtp-sink ..."
  if as_root sh -c 'echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections' &&
      apt_install postfix; then
    :
  else
    echo "Could not install postfix; using aiosmtpd as the SMTP server." >&2
  fi
fi
export PATH="$PATH:/usr/sbin"
