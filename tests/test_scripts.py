"""The scripts behind `make run` and `make test` (scripts/*.sh): waiting for apt's locks, and the address
`make run` leaves for commands started from other shells."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def bash(script: str, *, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail; source {REPO / 'scripts' / 'services.sh'}; {script}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_every_apt_get_of_the_scripts_waits_for_the_dpkg_lock() -> None:
    calls = [
        (path.name, line.strip())
        for path in sorted((REPO / "scripts").glob("*.sh"))
        for line in path.read_text().splitlines()
        if "apt-get" in line and not line.strip().startswith("#")
    ]

    # One definition, used by apt_install and apt_update; no script calls apt-get directly.
    assert calls == [("services.sh", "APT_GET=(apt-get -o DPkg::Lock::Timeout=600)")]


def test_apt_update_waits_while_another_apt_holds_the_package_lists(tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    (lists / "partial").mkdir(parents=True)
    # A private lists directory and no sources: a real `apt-get update` that needs no network and
    # leaves the machine's own package lists alone.
    private = (
        f"-o Dir::State::Lists={lists} -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts={tmp_path}"
    )
    lock = os.open(lists / "lock", os.O_RDWR | os.O_CREAT, 0o640)
    fcntl.lockf(lock, fcntl.LOCK_EX)  # as a running apt-get holds it
    release = threading.Timer(3, os.close, [lock])
    release.start()
    try:
        result = bash(f"APT_GET+=({private}); apt_update", cwd=tmp_path)
    finally:
        release.join()

    assert result.returncode == 0, result.stderr
    assert "Waiting for another package manager to finish" in result.stdout


def test_apt_update_gives_up_on_other_errors_at_once(tmp_path: Path) -> None:
    result = bash("APT_GET+=(-o Dir::State::Lists=/nonexistent/lists); apt_update", cwd=tmp_path)

    assert result.returncode == 1
    assert "Waiting" not in result.stdout and result.stderr


def test_a_command_from_another_shell_links_to_the_port_make_run_serves(tmp_path: Path) -> None:
    # A checkout of our own: the settings find var/run.env next to their config/ directory.
    shutil.copytree(REPO / "config", tmp_path / "config", ignore=shutil.ignore_patterns("__pycache__"))
    written = bash("run_env_write http://127.0.0.1:8811", cwd=tmp_path)
    assert written.returncode == 0, written.stderr

    def site_url(**env: str) -> str:
        base = {k: v for k, v in os.environ.items() if k not in {"SITE_URL", "DJANGO_SETTINGS_MODULE"}}
        result = subprocess.run(
            [sys.executable, "-c", "from django.conf import settings; print(settings.SITE_URL)"],
            cwd=tmp_path,
            env={
                **base,
                "DJANGO_SETTINGS_MODULE": "config.settings.local",
                "PYTHONPATH": f"{tmp_path}:{REPO}",
                **env,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert site_url() == "http://127.0.0.1:8811"
    assert site_url(SITE_URL="https://digest.example.org") == "https://digest.example.org"  # explicit wins
    (tmp_path / "var" / "run.env").unlink()
    assert site_url() == "http://127.0.0.1:8000"


def test_make_run_records_the_address_it_serves() -> None:
    run_sh = (REPO / "scripts" / "run.sh").read_text()

    # The address comes from WEB_PORT, and is recorded before anything that sends mail starts.
    assert re.search(r"SITE_URL=\$\{SITE_URL:-http://127\.0\.0\.1:\$WEB_PORT\}", run_sh)
    assert run_sh.index('run_env_write "$SITE_URL"') < run_sh.index("honcho")
