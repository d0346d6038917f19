"""The command line: the only place that turns errors into exit codes.

Exit codes (``once``, ``send``, ``check``): 0 all good; 1 some file failed;
2 usage or config error; 3 some inbox was not worked to the end: a file is held and
still waiting, or the inbox folder is missing. ``service ACTION``: 1 when the action
failed (``ServiceError``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from dropbox_sync import __version__, example, paths
from dropbox_sync.errors import ConfigError, DropboxSyncError, ServiceError, UsageError
from dropbox_sync.shutdown import stop_on_signals

OK, FAILED, USAGE, HELD = 0, 1, 2, 3
EXAMPLE_CONFIG = example.EXAMPLE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dropbox-sync",
        description="Upload CSV files dropped into inbox folders to Infiniti's non-interactive import.",
    )
    parser.add_argument("--version", action="version", version=f"dropbox-sync {__version__}")
    parser.add_argument("--config", type=Path, metavar="PATH",
                        help=f"config file (default: ${paths.CONFIG_ENV}, else the site config dir)")  # fmt: skip
    parser.add_argument("-v", "--verbose", action="store_true", help="log DEBUG details")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler: Callable[[argparse.Namespace], int], text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(handler=handler)
        return sub

    command("run", cmd_run, "watch every inbox until stopped (Ctrl+C, SIGTERM, service stop)")
    command("once", cmd_once, "process every file now in the inboxes, then exit")
    send = command("send", cmd_send, "upload one file now and print the server's JSON reply; moves nothing")
    send.add_argument("file", type=Path)
    send.add_argument("--inbox", help="use this inbox's URL and credentials (default: the first)")
    check = command("check", cmd_check, "validate the config and pre-flight CSV files without uploading")
    check.add_argument("files", nargs="*", type=Path, help="files to check (default: those waiting in the inboxes)")
    check.add_argument("--online", action="store_true",
                       help="also prove URL, TLS and credentials by posting an empty CSV (a no-op import)")  # fmt: skip
    preview = command("preview", cmd_preview, "show a file as Infiniti would receive it (encoding, column "
                      "mapping) and every problem found; sends nothing")  # fmt: skip
    preview.add_argument("file", type=Path)
    preview.add_argument("--inbox", help="read it as this inbox would (default: the inbox whose folder holds it, "
                         "else the first)")  # fmt: skip
    preview.add_argument("--rows", type=_positive, default=10, metavar="N", help="rows to show (default %(default)s)")
    diff = command("diff", cmd_diff, "what a file would change in Infiniti against the roster memory: added, "
                   "changed (old and new values), unchanged, leavers; sends nothing")  # fmt: skip
    diff.add_argument("file", type=Path)
    diff.add_argument("--inbox", help="read it as this inbox would (default: the inbox whose folder holds it, "
                      "else the first)")  # fmt: skip
    status = command("status", cmd_status, "per inbox: waiting and held files and why, last success and failure")
    status.add_argument("--json", action="store_true", help="print JSON for monitoring tools")
    history = command("history", cmd_history, "past imports, newest first: outcome, users created/updated/failed")
    history.add_argument("--inbox", metavar="NAME", help="only this inbox")
    history.add_argument("--since", metavar="DATE", help="only imports finished since DATE (2026-11-25, local time)")
    history.add_argument("--limit", type=_positive, metavar="N", help="at most N entries")
    history.add_argument("--json", action="store_true", help="print JSON")
    approve = command("approve", cmd_approve, "send a file the shrink guard put in held/ (it goes next)")
    approve.add_argument("files", nargs="+", help="names in an inbox's held/ folder (archived or as dropped)")
    approve.add_argument("--force", action="store_true",
                         help="approve even though a newer file of the same import was imported since")  # fmt: skip
    discard = command("discard", cmd_discard, "file a held file in failed/ without sending it")
    discard.add_argument("files", nargs="+", help="names in an inbox's held/ folder (archived or as dropped)")
    retry = command("retry", cmd_retry, "move files from failed/ back into their inbox to be sent again")
    retry.add_argument("files", nargs="*", help="archived names or paths (default: every file in failed/)")
    set_password = command("set-password", cmd_set_password,
                           "store an inbox's password in the OS keyring (for password_keyring = true)")  # fmt: skip
    set_password.add_argument("inbox", help="the inbox name from the config")
    set_password.add_argument("--stdin", action="store_true", help="read the password from standard input")
    init = command("init", cmd_init, "write a commented config file to start from")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    demo = command("demo", cmd_demo, "run the whole job on the embedded Infiniti emulator, no setup needed")
    demo.add_argument("--clean", action="store_true", help="delete the demo folder afterwards")
    emulator = command("emulator", cmd_emulator, "serve the Infiniti import emulator (rehearsals, tests)")
    from dropbox_sync.emulator.cli import configure_parser

    configure_parser(emulator)
    from dropbox_sync.service import cli as service_cli  # light: backends and pywin32 load per action

    service_cli.configure_parser(command("service", service_cli.command,
                                         "run as an OS service: install, uninstall, start, stop, status"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage message
        return int(exc.code or 0)
    # Imported here: loguru pulls in asyncio, a third of a second that
    # --help and usage errors need not pay.
    from dropbox_sync import log

    # A scheduled task on Windows captures output in the ANSI code page: a character it
    # lacks (a name in a server's reply) is printed as \uXXXX, valid JSON, never a traceback.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    log.setup(level="DEBUG" if args.verbose else "INFO")
    try:
        code = args.handler(args)
        sys.stdout.flush()  # here, not at exit: a reader gone away is handled below
        return code
    except BrokenPipeError:
        # `dropbox-sync status --json | head -1`: the reader went away; nothing more to tell it.
        # stdout now goes nowhere, or Python's exit flush would fail again (the Python docs'
        # "Note on SIGPIPE", signal module).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return FAILED
    except (ConfigError, UsageError) as exc:
        print(f"dropbox-sync: {exc}", file=sys.stderr)
        return USAGE
    except ServiceError as exc:  # `service ACTION` failed: name the action
        action = getattr(args, "service_action", None)
        print(f"dropbox-sync{f' service {action}' if action else ''}: {exc}", file=sys.stderr)
        return FAILED
    except DropboxSyncError as exc:
        print(f"dropbox-sync: {exc}", file=sys.stderr)
        return HELD
    except KeyboardInterrupt:
        return 130


# -- shared set-up -----------------------------------------------------------------


def _logger():
    from loguru import logger

    return logger


def _config_path(args: argparse.Namespace) -> Path:
    return args.config if args.config is not None else paths.default_config_path()


def _load(args: argparse.Namespace, *, sending: bool = False):
    """The config; with the passwords read only for a command that sends (``sending``):
    the others work where the password cannot be read."""
    from dropbox_sync import config

    cfg = config.load(_config_path(args))
    return config.resolve_secrets(cfg) if sending else cfg


def _start_file_logging(args: argparse.Namespace, cfg) -> None:
    from dropbox_sync import log

    log.setup_from_config(cfg, verbose=args.verbose)


def _state_dir(cfg) -> Path:
    return cfg.state_dir or paths.state_dir()


def _journal(cfg):
    from dropbox_sync.journal import Journal

    return Journal(_state_dir(cfg) / paths.JOURNAL_FILE)


# -- commands ---------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from dropbox_sync.service.core import run_service

    stop = threading.Event()
    stop_on_signals(stop)
    # The same core the Windows service, systemd and launchd run (minus their reporting).
    run_service(_config_path(args), stop, verbose=args.verbose)
    return OK


def cmd_once(args: argparse.Namespace) -> int:
    from dropbox_sync.session import pipeline_session

    cfg = _load(args, sending=True)
    _start_file_logging(args, cfg)
    stop = threading.Event()
    stop_on_signals(stop)
    with pipeline_session(cfg) as pipeline:
        result = pipeline.once(stop)
    for inbox, reason in result.held.items():
        _logger().error('inbox "{}": not worked: {}', inbox, reason)
    if result.held:
        return HELD
    return FAILED if result.failed else OK


def cmd_send(args: argparse.Namespace) -> int:
    import tempfile

    from dropbox_sync.client import ImportClient
    from dropbox_sync.prepare import Rejection, prepare

    cfg = _load(args, sending=True)
    inbox = _choose_inbox(cfg, args.inbox)
    path = _existing_file(args.file)
    # The pipeline's own preparation (route, encoding, pre-flight); a UTF-8 copy
    # goes to a temporary folder, never beside the user's file.
    with tempfile.TemporaryDirectory(prefix="dropbox-sync-send-") as scratch:
        prepared = prepare(inbox, path, scratch=Path(scratch))
        if isinstance(prepared, Rejection):
            print(json.dumps({"success": False, "summary": prepared.summary}, indent=2, ensure_ascii=False))
            return FAILED
        bar = _progress_bar(prepared.size)
        with ImportClient(inbox) as client:
            try:
                reply = client.upload(prepared.path, filename=prepared.original, url=prepared.route.url, progress=bar)
            finally:
                if bar is not None:
                    bar.finish()
    if reply.body is not None:
        print(json.dumps(reply.body, indent=2, ensure_ascii=False))
    else:
        print(reply.text)
    if reply.status in (401, 403, 404):
        _logger().error("HTTP {}: {}", reply.status, reply.summary)
        return HELD
    if reply.success is None:
        _logger().error("HTTP {}: the server did not give an Infiniti import reply", reply.status)
        return HELD
    return OK if reply.success else FAILED


def _progress_bar(size: int):
    """A bar on stderr for big files when a person watches (stdout is a terminal)."""
    from dropbox_sync.progress import MIN_BYTES, ProgressBar

    if size < MIN_BYTES or not sys.stdout.isatty():
        return None
    return ProgressBar(size, sys.stderr)


def _choose_inbox(cfg, name: str | None):
    if name is None:
        return cfg.inboxes[0]
    for inbox in cfg.inboxes:
        if inbox.name == name:
            return inbox
    raise UsageError(f'no inbox named "{name}" (have: {", ".join(i.name for i in cfg.inboxes)})')


def cmd_check(args: argparse.Namespace) -> int:
    from dropbox_sync.check import run_check

    cfg = _load(args, sending=args.online)
    return run_check(cfg, args.files, online=args.online, out=sys.stdout)


_MOST = 1_000_000_000  # SQLite's LIMIT overflows past 2**63; nobody means more than this


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= _MOST:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {_MOST}, not {text!r}")
    return value


def _existing_file(path: Path) -> Path:
    """FILE of send, preview and diff: a regular file, else a usage error that says what it is."""
    if path.is_dir():
        raise UsageError(f"{path}: is a folder, not a file")
    if path.exists() and not path.is_file():
        raise UsageError(f"{path}: is not a regular file (a device, a pipe or a socket)")
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    return path


def cmd_preview(args: argparse.Namespace) -> int:
    from dropbox_sync.preview import run_preview

    cfg, inbox, path = _file_command(args)
    return run_preview(inbox, path, rows=args.rows, out=sys.stdout, roster=_roster(cfg))


def cmd_diff(args: argparse.Namespace) -> int:
    from dropbox_sync.diff import run_diff

    cfg, inbox, path = _file_command(args)
    return run_diff(inbox, path, _roster(cfg), out=sys.stdout)


def _file_command(args: argparse.Namespace):
    """(config, inbox, file) of a command reading one FILE as an inbox would (--inbox, else the
    inbox whose folder holds it, else the first)."""
    from dropbox_sync.check import inbox_for

    cfg = _load(args)
    path = _existing_file(args.file)
    return cfg, _choose_inbox(cfg, args.inbox) if args.inbox else inbox_for(cfg, path), path


def _roster(cfg):
    """The roster memory, read-only: a command that sends nothing changes nothing."""
    from dropbox_sync.roster import Roster

    return Roster(_state_dir(cfg) / paths.ROSTER_FILE, repair=False)


def cmd_status(args: argparse.Namespace) -> int:
    from dropbox_sync import status

    cfg = _load(args)
    journal = _existing_journal(cfg)
    try:
        data = status.gather(cfg, _state_dir(cfg), journal)
    finally:
        if journal is not None:
            journal.close()
    print(json.dumps(data, indent=2, ensure_ascii=False) if args.json else status.render_text(data))
    return OK


def cmd_history(args: argparse.Namespace) -> int:
    from dropbox_sync import history

    cfg = _load(args)
    inbox = _choose_inbox(cfg, args.inbox).name if args.inbox is not None else None
    since = history.parse_since(args.since) if args.since is not None else None
    entries = []
    journal = _existing_journal(cfg)
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


def _existing_journal(cfg):
    """The journal if one was ever written (a reading command must not create one), else None."""
    return _journal(cfg) if (_state_dir(cfg) / paths.JOURNAL_FILE).exists() else None


def cmd_approve(args: argparse.Namespace) -> int:
    from dropbox_sync import archive, held

    cfg = _load(args)
    found, problems = held.find(cfg, args.files)
    for problem in problems:
        print(problem, file=sys.stderr)
    refused = 0
    journal = _existing_journal(cfg)
    try:
        for item in found:
            newer = held.newer_import(journal, item)
            if newer is not None and not args.force:
                print(f"{item.inbox.name}: {item.path.name} NOT approved: {newer.original} was dropped after it "
                      f"and imported ({newer.finished}); sending this older file would overwrite that newer "
                      f"data. If you are sure: dropbox-sync approve --force {item.original}", file=sys.stderr)
                refused += 1
                continue
            try:
                archive.approve(item.inbox.path, item.path.name)
            except OSError as exc:
                print(f"{item.path.name}: not approved: {exc.strerror or exc}", file=sys.stderr)
                refused += 1
                continue
            if newer is not None:
                print(f"{item.inbox.name}: warning: {item.path.name} is older than {newer.original}, imported "
                      f"{newer.finished}; it will overwrite that newer data (--force)", file=sys.stderr)  # fmt: skip
            print(f"{item.inbox.name}: {item.path.name} approved; it is sent next")
    finally:
        if journal is not None:
            journal.close()
    return FAILED if problems or refused else OK


def cmd_discard(args: argparse.Namespace) -> int:
    import datetime as dt

    from dropbox_sync import held

    cfg = _load(args)
    found, problems = held.find(cfg, args.files)
    for problem in problems:
        print(problem, file=sys.stderr)
    journal = _existing_journal(cfg)
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
    from dropbox_sync.retry import retry_failed

    cfg = _load(args)
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
    inbox = _choose_inbox(_load(args), args.inbox)
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
    target = _config_path(args)
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


def cmd_demo(args: argparse.Namespace) -> int:
    from dropbox_sync.demo import run_demo

    return run_demo(keep=not args.clean, out=sys.stdout)


def cmd_emulator(args: argparse.Namespace) -> int:
    from dropbox_sync.emulator.cli import command

    stop = threading.Event()
    stop_on_signals(stop)
    return command(args, stop)
