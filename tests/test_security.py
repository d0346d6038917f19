"""TLS, credential sources and proxies, against the real emulator."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from dropbox_sync import config
from dropbox_sync.errors import ConfigError
from dropbox_sync.pipeline.runner import Pipeline
from tests.proxy import ConnectProxy
from tests.support import PASSWORD, USER, archived, emulator_with_password, good_csv, write_config


@pytest.fixture
def emu(tmp_path):
    emulator = emulator_with_password(tmp_path).start()
    yield emulator
    emulator.stop()


def test_self_signed_server_without_ca_bundle_holds_then_with_it_uploads(tmp_path, emu):
    inbox = tmp_path / "inbox"
    untrusted = config.load(write_config(tmp_path, emu, ca_bundle=""))
    (inbox / "a.csv").write_text(good_csv("a"), encoding="utf-8")
    result = Pipeline(untrusted).once(threading.Event())
    assert "certificate not trusted" in result.held["inbox"]
    assert "set ca_bundle" in result.held["inbox"]
    assert emu.uploads() == [] and archived(inbox, "failed") == []
    trusted = config.load(write_config(tmp_path, emu))
    assert not Pipeline(trusted).once(threading.Event()).held
    assert len(archived(inbox, "processed")) == 1


def test_plain_http_to_a_remote_host_is_refused_at_start_with_exit_2(tmp_path, emu):
    path = write_config(tmp_path, emu, url="http://library.example.edu/api/import/users")
    result = subprocess.run(
        [sys.executable, "-m", "dropbox_sync", "--config", str(path), "once"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert "plain http:// to a remote host" in result.stderr
    assert "Traceback" not in result.stderr


def test_uploads_go_through_the_configured_proxy(tmp_path, emu):
    inbox = tmp_path / "inbox"
    with ConnectProxy() as proxy:
        cfg = config.load(write_config(tmp_path, emu, proxy=proxy.url))
        (inbox / "via-proxy.csv").write_text(good_csv("p"), encoding="utf-8")
        Pipeline(cfg).once(threading.Event())
    assert proxy.targets == [f"127.0.0.1:{emu.port}"]
    assert len(archived(inbox, "processed")) == 1


def test_https_proxy_from_the_environment_is_honoured(tmp_path, emu, monkeypatch):
    inbox = tmp_path / "inbox"
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        cfg = config.load(write_config(tmp_path, emu))
        (inbox / "env-proxy.csv").write_text(good_csv("e"), encoding="utf-8")
        Pipeline(cfg).once(threading.Event())
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        (inbox / "direct.csv").write_text(good_csv("d"), encoding="utf-8")
        Pipeline(cfg).once(threading.Event())
    assert proxy.targets == [f"127.0.0.1:{emu.port}"], "NO_PROXY skips the proxy"
    assert len(archived(inbox, "processed")) == 2


def test_password_from_the_os_keyring(tmp_path, emu, monkeypatch):
    # keyrings.alt's file backend: the real keyring API without a desktop session.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    path = write_config(tmp_path, emu, password=None, password_keyring=True)
    path.write_text("\n".join(l for l in path.read_text().splitlines() if not l.startswith("password =")))
    with pytest.raises(ConfigError, match="no password stored: run 'dropbox-sync set-password inbox'"):
        config.resolve_secrets(config.load(path))
    env = {
        **os.environ,
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
    }
    stored = subprocess.run(
        [sys.executable, "-m", "dropbox_sync", "--config", str(path), "set-password", "inbox", "--stdin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert stored.returncode == 0, stored.stderr
    assert PASSWORD not in stored.stdout + stored.stderr
    cfg = config.resolve_secrets(config.load(path))
    assert cfg.inboxes[0].password.reveal() == PASSWORD and cfg.inboxes[0].username == USER
    (tmp_path / "inbox" / "k.csv").write_text(good_csv("k"), encoding="utf-8")
    assert not Pipeline(cfg).once(threading.Event()).held


@pytest.mark.skipif(os.name != "posix", reason="POSIX mode bits")
def test_an_inline_password_in_a_world_readable_config_is_warned_about(tmp_path, emu):
    from loguru import logger

    path = write_config(tmp_path, emu)
    messages: list[str] = []
    sink = logger.add(messages.append, level="WARNING")
    try:
        path.chmod(0o644)
        config.load(path)
        assert any("other users can read it: chmod 600" in m for m in messages)
        messages.clear()
        path.chmod(0o600)
        config.load(path)
        assert not any("other users can read it" in m for m in messages)
    finally:
        logger.remove(sink)


def test_verify_tls_false_warns_at_every_start(tmp_path, emu):
    from loguru import logger

    messages: list[str] = []
    sink = logger.add(messages.append, level="WARNING")
    try:
        config.load(write_config(tmp_path, emu, verify_tls=False, ca_bundle=""))
    finally:
        logger.remove(sink)
    assert any("certificate is NOT checked" in m for m in messages)
