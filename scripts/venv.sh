# Sourced by run.sh and test.sh: create .venv and install a requirements file when it changed.
# usage: ensure_venv requirements.txt
ensure_venv() {
  local requirements=$1
  local python=${PYTHON:-}
  if [ -z "$python" ]; then
    for candidate in python3.11 python3; do
      if command -v "$candidate" >/dev/null 2>&1; then python=$candidate; break; fi
    done
  fi
  if [ -z "$python" ]; then echo "Python 3.11 is required (python3.11 or python3 on PATH)." >&2; exit 1; fi
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "Python 3.11+ is required; $python is $("$python" --version 2>&1)." >&2; exit 1
  fi
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  local stamp=.venv/.installed-$(basename "$requirements")
  if [ ! -f "$stamp" ] || [ "$requirements" -nt "$stamp" ] || [ requirements.txt -nt "$stamp" ] \
    || [ requirements-local.txt -nt "$stamp" ]; then
    echo "Installing $requirements into .venv ..."
    .venv/bin/python -m pip install -q --disable-pip-version-check -r "$requirements"
    touch "$stamp"
  fi
}
