"""installer/linux/install.sh and uninstall.sh, run for real into a temporary DESTDIR.

A real venv is created and this source tree, built once into a wheel, is
installed into it offline (``--no-deps --no-index``). Downloading the
dependencies would add ~15 s, so ``dropbox-sync`` in the staged venv borrows
them from the test venv through PYTHONPATH, while dropbox_sync itself must
come from the staged venv. Set DROPBOX_SYNC_FULL_INSTALL_TEST=1 to also
install from the source tree with every dependency from the package index.

The PowerShell installers cannot run on this machine (no PowerShell); they are
checked for the contract they must keep (idempotent, -WhatIf, thin wrappers).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALLER = REPO / "installer"
PREFIX = "/opt/dropbox-sync"
CONFIG = "/etc/dropbox-sync/config.toml"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """This source tree as a wheel, built once: installing it needs no index and no build."""
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "-w",
            str(out),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("dropbox_sync-*.whl")
    return built


def run_script(
    script: Path, destdir: Path, *args: str, source: Path | None = None, pip_args: str = "--no-deps --no-index"
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DESTDIR": str(destdir),
        "PREFIX": PREFIX,
        "CONFIG": CONFIG,
        "PYTHON": sys.executable,
        "PIP_ARGS": pip_args,
    }
    if source is not None:
        env["SOURCE"] = str(source)
    env.pop("DROPBOX_SYNC_CONFIG", None)
    if "--no-deps" in pip_args:  # the staged venv's dropbox-sync borrows its dependencies from ours
        env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]
    return subprocess.run(
        ["sh", str(script), *args], env=env, cwd=destdir.parent, capture_output=True, text=True, timeout=300
    )


def borrow_deps(venv: Path) -> None:
    """Let the staged venv find its dependencies in ours, AFTER its own packages.

    A .pth line is appended to sys.path behind the venv's site-packages, so a
    test venv that has dropbox_sync installed (CI's non-editable install)
    cannot shadow the staged copy; PYTHONPATH would come first and would."""
    (site,) = (venv / "lib").glob("python3*/site-packages")
    (site / "zz-borrowed-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")


def help_works(venv: Path, *, borrow: bool) -> subprocess.CompletedProcess:
    if borrow:
        borrow_deps(venv)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(venv / "bin" / "dropbox-sync"), "--help"], env=env, cwd=venv, capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")
def test_linux_install_into_destdir_then_again_then_uninstall(tmp_path, wheel) -> None:
    stage = tmp_path / "stage"
    done = run_script(INSTALLER / "linux" / "install.sh", stage, source=wheel)
    assert done.returncode == 0, done.stderr + done.stdout
    venv = stage / PREFIX.lstrip("/") / "venv"
    unit_file = stage / "etc" / "systemd" / "system" / "dropbox-sync.service"
    config_file = stage / CONFIG.lstrip("/")
    env_file = config_file.with_name("dropbox-sync.env")

    helped = help_works(venv, borrow=True)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: dropbox-sync"), helped.stderr
    origin = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import dropbox_sync; print(dropbox_sync.__file__)"],
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert Path(origin.stdout.strip()).is_relative_to(venv), "the package must be installed in the staged venv"

    unit = unit_file.read_text(encoding="utf-8")
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start == f"ExecStart={PREFIX}/venv/bin/dropbox-sync --config {CONFIG} service run"
    assert (stage / exec_start.split()[0].removeprefix("ExecStart=/")).is_file(), "the unit names the staged venv"
    assert config_file.is_file(), "a config from 'init' when there was none"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600

    config_file.write_text(config_file.read_text(encoding="utf-8") + "\n# edited by the technician\n")
    again = run_script(INSTALLER / "linux" / "install.sh", stage, source=wheel)
    assert again.returncode == 0, again.stderr + again.stdout
    assert "creating the venv" not in again.stdout, "a second run reuses the venv"
    assert "edited by the technician" in config_file.read_text(encoding="utf-8"), "an existing config is kept"
    assert unit_file.read_text(encoding="utf-8") == unit

    gone = run_script(INSTALLER / "linux" / "uninstall.sh", stage)
    assert gone.returncode == 0, gone.stderr + gone.stdout
    assert not unit_file.exists() and not venv.exists() and not (stage / PREFIX.lstrip("/")).exists()
    assert config_file.is_file() and env_file.is_file(), "config is kept unless --remove-data"

    purged = run_script(INSTALLER / "linux" / "uninstall.sh", stage, "--remove-data")
    assert purged.returncode == 0, purged.stderr + purged.stdout
    assert not config_file.exists() and not env_file.exists() and not config_file.parent.exists()


@pytest.mark.skipif(
    not os.environ.get("DROPBOX_SYNC_FULL_INSTALL_TEST"),
    reason="downloads every dependency (~15 s); set DROPBOX_SYNC_FULL_INSTALL_TEST=1",
)
def test_linux_install_with_dependencies_gives_a_self_contained_venv(tmp_path) -> None:
    stage = tmp_path / "stage"
    done = run_script(INSTALLER / "linux" / "install.sh", stage, pip_args="")
    assert done.returncode == 0, done.stderr + done.stdout
    helped = help_works(stage / PREFIX.lstrip("/") / "venv", borrow=False)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: dropbox-sync"), helped.stderr


def test_install_sh_refuses_an_old_python_and_a_non_root_real_install(tmp_path) -> None:
    fake_python = tmp_path / "python3.9"
    fake_python.write_text("#!/bin/sh\nexit 1\n")
    fake_python.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake_python), "DESTDIR": str(tmp_path / "stage")}
    done = subprocess.run(["sh", str(INSTALLER / "linux" / "install.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "older than 3.11" in done.stderr
    assert not (tmp_path / "stage").exists()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (Debian package: shellcheck)")
def test_shell_installers_pass_shellcheck() -> None:
    scripts = sorted(str(p) for p in INSTALLER.glob("*/*.sh"))
    done = subprocess.run(["shellcheck", *scripts], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("script", ["install.ps1", "uninstall.ps1"])
def test_powershell_installers_keep_their_contract(script: str) -> None:
    """PowerShell cannot run here: check what the scripts must say and do, textually."""
    text = (INSTALLER / "windows" / script).read_text(encoding="utf-8")
    assert "[CmdletBinding(SupportsShouldProcess" in text, "-WhatIf support"
    assert "$PSCmdlet.ShouldProcess(" in text
    assert "service install" in text if script == "install.ps1" else "service uninstall" in text
    assert "$LASTEXITCODE" in text, "a failed dropbox-sync call must stop the script"
    if script == "install.ps1":
        assert "3, 11" in text or "3.11" in text, "checks the Python version"
        assert " init" in text, "writes a config with 'dropbox-sync init' when there is none"
    else:
        assert "RemoveData" in text
