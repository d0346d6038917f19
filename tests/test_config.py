"""Config validation: every mistake is one clear line naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropbox_sync import config
from dropbox_sync.cli import main
from dropbox_sync.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "inbox").mkdir(exist_ok=True)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_to_send(path: Path) -> config.Config:
    """What a command that sends does: load, then read the passwords."""
    return config.resolve_secrets(config.load(path))


GOOD = """
[[inbox]]
name = "students"
path = "inbox"
url = "https://library.example.edu/api/import/users"
username = "autoimport"
password = "s3cret-Password"
"""


def test_a_minimal_config_loads_with_defaults(tmp_path):
    cfg = config.load(write(tmp_path, GOOD))
    (inbox,) = cfg.inboxes
    assert inbox.path == (tmp_path / "inbox").resolve()
    assert inbox.settle_seconds == 5.0
    assert inbox.include == ("*.csv",)
    assert inbox.max_file_size == 512 * 1000**2
    assert "s3cret" not in repr(inbox)


def test_defaults_table_applies_to_every_inbox_and_an_inbox_overrides_it(tmp_path):
    (tmp_path / "b").mkdir()
    text = (
        '[defaults]\nsettle_seconds = 2\nmax_file_size = "1GB"\n'
        + GOOD
        + GOOD.replace('"students"', '"staff"').replace('"inbox"', '"b"')
        + "settle_seconds = 9\n"
    )
    cfg = config.load(write(tmp_path, text))
    assert [i.settle_seconds for i in cfg.inboxes] == [2.0, 9.0]
    assert cfg.inboxes[0].max_file_size == 10**9


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t + "colour = 'blue'\n", "config.toml: inbox \"students\": unknown key 'colour'"),
        (lambda t: "verbose = true\n" + t, "config.toml: unknown key 'verbose'"),
        (lambda t: t.replace('path = "inbox"', 'path = "config.toml"'), "path is a file, not a folder"),
        (lambda t: t.replace('path = "inbox"\n', ""), "path is missing"),
        (lambda t: t.replace('url = "https://library.example.edu/api/import/users"\n', ""), "url is missing"),
        (lambda t: t.replace("https://library", "ftp://library"), "url must start with https://"),
        (lambda t: t.replace("https://library.example.edu", "https://host:99999"), "url is not a valid URL"),
        (lambda t: t.replace("https://", "http://"), "plain http:// to a remote host"),
        (lambda t: t + "settle_seconds = 'soon'\n", "settle_seconds must be a number of seconds"),
        (lambda t: t + "settle_seconds = -1\n", "settle_seconds must be at least 0"),
        (lambda t: t + "include = 5\n", "include must be a list of file name patterns"),
        (lambda t: t + "observer = 'magic'\n", "observer must be one of auto, native, polling"),
        (lambda t: t + "max_file_size = 'big'\n", "max_file_size must be a size"),
        (lambda t: t + "verify_tls = 'no'\n", "verify_tls must be true or false"),
        (lambda t: t + "password_env = 'X'\n", "password_env conflicts with password"),
        (
            lambda t: t.replace('password = "s3cret-Password"', 'password_env = "DS_TEST_UNSET_VAR"'),
            "names environment variable DS_TEST_UNSET_VAR, which is not set",
        ),
        (
            lambda t: t.replace('password = "s3cret-Password"', 'password_file = "missing.txt"'),
            "password_file cannot be read",
        ),
        (lambda t: t.replace('username = "autoimport"\n', ""), "username is missing"),
        (lambda t: t + "ca_bundle = 'nope.pem'\n", "ca_bundle file not found"),
        (lambda t: "[[inbox]\n", "not valid TOML"),
        (lambda t: "log_level = 'LOUD'\n" + t, "log_level must be one of"),
        (lambda t: "", "no [[inbox]] table"),
    ],
)
def test_mistakes_are_one_line_naming_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError) as caught:
        load_to_send(write(tmp_path, change(GOOD)))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert "::" not in str(caught.value)


def test_two_inboxes_on_one_folder_are_refused(tmp_path):
    text = GOOD + GOOD.replace('"students"', '"again"').replace('path = "inbox"', 'path = "./inbox/"')
    with pytest.raises(ConfigError, match='inbox "again": path is the same folder as inbox "students"'):
        config.load(write(tmp_path, text))


def test_credentials_in_the_url_move_into_basic_auth_and_are_hidden(tmp_path, caplog):
    text = GOOD.replace('username = "autoimport"\n', "").replace('password = "s3cret-Password"\n', "")
    text = text.replace("https://library", "https://autoimport:Url-Pa55word@library")
    (inbox,) = load_to_send(write(tmp_path, text)).inboxes
    assert inbox.username == "autoimport"
    assert inbox.password.reveal() == "Url-Pa55word"
    assert inbox.url == "https://library.example.edu/api/import/users"
    assert "Url-Pa55word" not in inbox.safe_url


def test_plain_http_is_allowed_to_loopback_only(tmp_path):
    text = GOOD.replace("https://library.example.edu", "http://127.0.0.1:8080")
    assert config.load(write(tmp_path, text)).inboxes[0].url.startswith("http://127.0.0.1")


def test_password_from_env_and_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DS_TEST_PW", "from-env-pw")
    cfg = load_to_send(write(tmp_path, GOOD.replace('password = "s3cret-Password"', 'password_env = "DS_TEST_PW"')))
    assert cfg.inboxes[0].password.reveal() == "from-env-pw"
    (tmp_path / "pw.txt").write_text("from-file-pw\n", encoding="utf-8")
    cfg = load_to_send(write(tmp_path, GOOD.replace('password = "s3cret-Password"', 'password_file = "pw.txt"')))
    assert cfg.inboxes[0].password.reveal() == "from-file-pw"


def test_parsing_reads_no_password_and_registers_nothing(tmp_path):
    """parse is pure: a password source that cannot be read yet is no parse error, and an
    inline password is not registered with the scrubber until a command that sends reads it."""
    from dropbox_sync.redact import scrub

    unset = GOOD.replace('password = "s3cret-Password"', 'password_env = "DS_TEST_UNSET_VAR"')
    cfg = config.load(write(tmp_path, unset))
    assert cfg.inboxes[0].password is None
    with pytest.raises(ConfigError, match='inbox "students": password_env names environment variable'):
        config.resolve_secrets(cfg)
    inline = GOOD.replace("s3cret-Password", "Not-Yet-Registered-9")
    cfg = config.parse(config.read_toml(write(tmp_path, inline)))
    assert scrub("Not-Yet-Registered-9") == "Not-Yet-Registered-9"
    resolved = config.resolve_secrets(cfg)
    assert resolved.inboxes[0].password.reveal() == "Not-Yet-Registered-9"
    assert scrub("Not-Yet-Registered-9") == "***"
    assert config.resolve_secrets(resolved) == resolved  # calling it again is harmless


def test_cli_prints_one_line_and_exits_2_on_a_config_error(tmp_path, capsys):
    path = write(tmp_path, GOOD + "colour = 'blue'\n")
    assert main(["--config", str(path), "once"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "dropbox-sync: config.toml: inbox \"students\": unknown key 'colour'"


def test_cli_missing_config_file_exits_2(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "absent.toml"), "once"]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_the_example_config_is_valid_once_paths_exist(tmp_path, monkeypatch):
    from dropbox_sync.cli import EXAMPLE_CONFIG

    monkeypatch.setenv("DROPBOX_SYNC_PASSWORD", "example-pw")
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8").replace("D:/SIS/export", str(tmp_path / "inbox"))
    assert config.load(write(tmp_path, text)).inboxes[0].name == "students"


def test_the_top_level_config_toml_is_the_packaged_example():
    from dropbox_sync.cli import EXAMPLE_CONFIG

    top = Path(__file__).resolve().parent.parent / "config.toml"
    assert top.read_text(encoding="utf-8") == EXAMPLE_CONFIG.read_text(encoding="utf-8")
