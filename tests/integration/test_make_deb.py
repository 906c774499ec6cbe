"""`make deb` installs the Debian packages it needs as root and as a user with sudo.

The real `id`, `dpkg-query`, `sudo` and `apt-get` are replaced by stand-ins on PATH that
record how they were called, so the test sees the exact commands `make deb` runs on a fresh
machine without installing anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def stand_ins(bin_dir: Path, calls: Path, *, uid: int, sudo: bool, installed: set[str]) -> dict[str, str]:
    bin_dir.mkdir()
    scripts = {
        "id": f'#!/bin/sh\n[ "$1" = -u ] && echo {uid} || echo "uid={uid}"\n',
        "dpkg-query": "#!/bin/sh\n"
        + "".join(f'[ "$3" = {name} ] && {{ printf "install ok installed"; exit 0; }}\n' for name in installed)
        + "exit 1\n",
        "apt-get": f'#!/bin/sh\necho "apt-get $* DEBIAN_FRONTEND=$DEBIAN_FRONTEND" >> {calls}\n',
    }
    if sudo:
        scripts["sudo"] = f'#!/bin/sh\necho "sudo $*" >> {calls}\nexec "$@"\n'
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    # make and the shell need the system's tools; the stand-ins come first.
    system = ":".join(
        str(Path(found).parent) for tool in ("make", "sh", "env") if (found := shutil.which(tool)) is not None
    )
    return {**os.environ, "PATH": f"{bin_dir}:{system}"}


def make_deb(env: dict[str, str], packages: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "deb", f"DEB_PACKAGES={packages}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_given_root_without_sudo_when_packages_are_missing_then_apt_installs_only_those(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    env = stand_ins(tmp_path / "bin", calls, uid=0, sudo=False, installed={"umoci"})

    result = make_deb(env, "umoci runc")

    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == [
        "apt-get update -qq DEBIAN_FRONTEND=noninteractive",
        "apt-get install -y -qq runc DEBIAN_FRONTEND=noninteractive",
    ]


def test_given_a_user_with_sudo_when_packages_are_missing_then_apt_runs_through_sudo(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    env = stand_ins(tmp_path / "bin", calls, uid=1000, sudo=True, installed=set())

    result = make_deb(env, "runc")

    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == [
        "sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq",
        "apt-get update -qq DEBIAN_FRONTEND=noninteractive",
        "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc",
        "apt-get install -y -qq runc DEBIAN_FRONTEND=noninteractive",
    ]


def test_given_a_user_without_sudo_when_packages_are_missing_then_it_says_what_is_needed(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    env = stand_ins(tmp_path / "bin", calls, uid=1000, sudo=False, installed=set())

    result = make_deb(env, "runc")

    assert result.returncode != 0
    assert "needs root" in result.stderr
    assert not calls.exists()


def test_given_everything_installed_then_apt_is_not_called(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    env = stand_ins(tmp_path / "bin", calls, uid=0, sudo=False, installed={"umoci", "runc"})

    result = make_deb(env, "umoci runc")

    assert result.returncode == 0, result.stderr
    assert not calls.exists()
