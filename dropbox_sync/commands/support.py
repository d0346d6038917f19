"""What every command of the command line needs: the exit codes, the config (with the
passwords read only for a command that sends), the state dir and its journal, which inbox,
which FILE. Errors go up to ``cli.main``, the one place that turns them into exit codes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dropbox_sync import paths
from dropbox_sync.errors import UsageError

OK, FAILED, USAGE, HELD = 0, 1, 2, 3

# -- shared set-up -----------------------------------------------------------------


def get_logger():
    """loguru's logger, imported on first use (as the other heavy imports here)."""
    from loguru import logger

    return logger


def config_path(args: argparse.Namespace) -> Path:
    """``--config``, else the platform's default config path."""
    return args.config if args.config is not None else paths.default_config_path()


def load_config(args: argparse.Namespace, *, sending: bool = False):
    """The config; with the passwords read only for a command that sends (``sending``):
    the others work where the password cannot be read."""
    from dropbox_sync import config

    cfg = config.load(config_path(args))
    return config.resolve_secrets(cfg) if sending else cfg


def start_file_logging(args: argparse.Namespace, cfg) -> None:
    """The log files the config asks for (``log.setup_from_config``)."""
    from dropbox_sync import log

    log.setup_from_config(cfg, verbose=args.verbose)


def state_dir_of(cfg) -> Path:
    """The config's ``state_dir``, else the platform's default."""
    return cfg.state_dir or paths.state_dir()


def _journal(cfg):
    from dropbox_sync.state.journal import Journal

    return Journal(state_dir_of(cfg) / paths.JOURNAL_FILE)


def choose_inbox(cfg, name: str | None):
    """The inbox named ``name`` (``--inbox``), else the first; a usage error naming the inboxes there are."""
    if name is None:
        return cfg.inboxes[0]
    for inbox in cfg.inboxes:
        if inbox.name == name:
            return inbox
    raise UsageError(f'no inbox named "{name}" (have: {", ".join(i.name for i in cfg.inboxes)})')


_MOST = 1_000_000_000  # SQLite's LIMIT overflows past 2**63; nobody means more than this


def positive_count(text: str) -> int:
    """An argparse type: a whole number from 1 to a billion."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= _MOST:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {_MOST}, not {text!r}")
    return value


def existing_file(path: Path) -> Path:
    """FILE of send, preview and diff: a regular file, else a usage error that says what it is."""
    if path.is_dir():
        raise UsageError(f"{path}: is a folder, not a file")
    if path.exists() and not path.is_file():
        raise UsageError(f"{path}: is not a regular file (a device, a pipe or a socket)")
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    return path


def file_command(args: argparse.Namespace):
    """(config, inbox, file) of a command reading one FILE as an inbox would (--inbox, else the
    inbox whose folder holds it, else the first)."""
    from dropbox_sync.commands.check import inbox_for

    cfg = load_config(args)
    path = existing_file(args.file)
    return cfg, choose_inbox(cfg, args.inbox) if args.inbox else inbox_for(cfg, path), path


def read_only_roster(cfg):
    """The roster memory, read-only: a command that sends nothing changes nothing."""
    from dropbox_sync.roster.memory import Roster

    return Roster(state_dir_of(cfg) / paths.ROSTER_FILE, repair=False)


def existing_journal(cfg):
    """The journal if one was ever written (a reading command must not create one), else None;
    None too, said once, if it cannot be opened at all: status must show the folders anyway."""
    from dropbox_sync.errors import StateUnavailable

    if not (state_dir_of(cfg) / paths.JOURNAL_FILE).exists():
        return None
    try:
        return _journal(cfg)
    except StateUnavailable as exc:
        get_logger().error("{}; shown without the history", exc)
        return None
