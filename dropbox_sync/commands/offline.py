"""The commands that send nothing: ``preview``, ``diff``, ``status``, ``history``,
``approve``, ``discard``, ``retry``, ``set-password`` and ``init``. None of them reads a
password (``set-password`` stores one); errors go up to ``cli.main``.
"""

from __future__ import annotations

import argparse
import json
import sys

from dropbox_sync.commands.support import (
    FAILED,
    OK,
    choose_inbox,
    config_path,
    existing_journal,
    file_command,
    load_config,
    read_only_roster,
    state_dir_of,
)
from dropbox_sync.errors import UnsafeFolder, UsageError


def cmd_preview(args: argparse.Namespace) -> int:
    from dropbox_sync.commands.preview import run_preview

    cfg, inbox, path = file_command(args)
    return run_preview(inbox, path, rows=args.rows, out=sys.stdout, roster=read_only_roster(cfg))


def cmd_diff(args: argparse.Namespace) -> int:
    from dropbox_sync.commands.diff import run_diff

    cfg, inbox, path = file_command(args)
    return run_diff(inbox, path, read_only_roster(cfg), out=sys.stdout)


def cmd_status(args: argparse.Namespace) -> int:
    from dropbox_sync.state import status

    cfg = load_config(args)
    journal = existing_journal(cfg)
    try:
        data = status.gather(cfg, state_dir_of(cfg), journal)
    finally:
        if journal is not None:
            journal.close()
    print(json.dumps(data, indent=2, ensure_ascii=False) if args.json else status.render_text(data))
    return OK


def cmd_history(args: argparse.Namespace) -> int:
    from dropbox_sync.commands import history

    cfg = load_config(args)
    inbox = choose_inbox(cfg, args.inbox).name if args.inbox is not None else None
    since = history.parse_since(args.since) if args.since is not None else None
    entries = []
    journal = existing_journal(cfg)
    if journal is not None:
        try:
            entries = journal.history(inbox=inbox, since=since, limit=args.limit)
        finally:
            journal.close()
    if args.json:
        print(json.dumps(history.as_json(entries, cfg), indent=2, ensure_ascii=False))
    else:
        print(history.render_text(entries, cfg))
    return OK


def cmd_approve(args: argparse.Namespace) -> int:
    from dropbox_sync.pipeline import archive
    from dropbox_sync.state import held

    cfg = load_config(args)
    found, problems = held.find(cfg, args.files)
    for problem in problems:
        print(problem, file=sys.stderr)
    refused = 0
    journal = existing_journal(cfg)
    try:
        for item in found:
            newer = held.newer_import(journal, item)
            if newer is not None and not args.force:
                print(
                    f"{item.inbox.name}: {item.path.name} NOT approved: {newer.original} was dropped after it "
                    f"and imported ({newer.finished}); sending this older file would overwrite that newer "
                    f"data. If you are sure: dropbox-sync approve --force {item.original}",
                    file=sys.stderr,
                )
                refused += 1
                continue
            try:
                archive.approve(item.inbox.path, item.path.name)
            except (OSError, UnsafeFolder) as exc:
                print(f"{item.path.name}: not approved: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
                refused += 1
                continue
            if newer is not None:
                print(
                    f"{item.inbox.name}: warning: {item.path.name} is older than {newer.original}, imported "
                    f"{newer.finished}; it will overwrite that newer data (--force)",
                    file=sys.stderr,
                )
            print(f"{item.inbox.name}: {item.path.name} approved; it is sent next")
    finally:
        if journal is not None:
            journal.close()
    return FAILED if problems or refused else OK


def cmd_discard(args: argparse.Namespace) -> int:
    import datetime as dt

    from dropbox_sync.state import held

    cfg = load_config(args)
    found, problems = held.find(cfg, args.files)
    for problem in problems:
        print(problem, file=sys.stderr)
    journal = existing_journal(cfg)
    try:
        for item in found:
            try:
                target = held.discard(item, journal, now=dt.datetime.now(dt.UTC))
            except OSError as exc:
                print(f"{item.path.name}: not discarded: {exc.strerror or exc}", file=sys.stderr)
                problems.append(item.path.name)
                continue
            print(f"{item.inbox.name}: {item.path.name} discarded; filed as {target}")
    finally:
        if journal is not None:
            journal.close()
    return FAILED if problems else OK


def cmd_retry(args: argparse.Namespace) -> int:
    from dropbox_sync.commands.retry import retry_failed

    cfg = load_config(args)
    moved, problems = retry_failed(cfg, args.files)
    for original, inbox in moved:
        print(f"{inbox.name}: {original} moved back into {inbox.path}")
    for problem in problems:
        print(problem, file=sys.stderr)
    if not moved and not problems:
        print("nothing in failed/ to retry")
    return FAILED if problems else OK


def cmd_set_password(args: argparse.Namespace) -> int:
    from dropbox_sync.credentials import keyring_entry

    # Loading reads no password, so the config loads before the password exists; the
    # inbox's name and username are the ones the service will look the password up by.
    inbox = choose_inbox(load_config(args), args.inbox)
    username = inbox.username
    password = _read_new_password(args.stdin)
    try:
        import keyring
        import keyring.errors
    except ImportError:
        raise UsageError("the keyring extra is not installed: pip install 'dropbox-sync[keyring]'") from None
    try:
        keyring.set_password(*keyring_entry(inbox.name, username), password)
    except keyring.errors.KeyringError as exc:
        raise UsageError(f"the OS keyring refused the password: {exc}") from None
    print(f'stored the password of {username} for inbox "{inbox.name}" in the OS keyring')
    return OK


def _read_new_password(from_stdin: bool) -> str:
    import getpass

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise UsageError("the two passwords differ; nothing stored")
    if len(password) < 3:
        raise UsageError("the password is empty or too short; nothing stored")
    return password


def cmd_init(args: argparse.Namespace) -> int:
    # Late: importing the config package would cost every command's start-up (see cli.py).
    from dropbox_sync.config import example

    target = config_path(args)
    if target.exists() and not args.force:
        raise UsageError(f"{target} already exists (use --force to overwrite)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(example.example_text(), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    print(f"wrote {target}")
    print(example.next_step(args.config))
    return OK
