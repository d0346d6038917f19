"""The command line: the only place that turns errors into exit codes.

Exit codes (``once``, ``send``, ``check``): 0 all good; 1 some file failed;
2 usage or config error; 3 some inbox was not worked to the end: a file is held and
still waiting, or the inbox folder is missing. ``service ACTION``: 1 when the action
failed (``ServiceError``).

Here: the parser, ``main`` and the commands that send (``run``, ``once``, ``send``,
``check``, ``demo``, ``emulator``); the commands that send nothing are in
``commands/offline.py``, what they all share (exit codes, config, journal) in ``commands/support.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from dropbox_sync import __version__, paths
from dropbox_sync.commands.offline import (
    cmd_approve,
    cmd_diff,
    cmd_discard,
    cmd_history,
    cmd_init,
    cmd_preview,
    cmd_retry,
    cmd_set_password,
    cmd_status,
)
from dropbox_sync.commands.support import (
    FAILED,
    HELD,
    OK,
    USAGE,
    choose_inbox,
    config_path,
    existing_file,
    get_logger,
    load_config,
    positive_count,
    start_file_logging,
)
from dropbox_sync.errors import ConfigError, DropboxSyncError, ServiceError, UsageError
from dropbox_sync.redact import ScrubbingStream
from dropbox_sync.shutdown import stop_on_signals


def __getattr__(name: str) -> object:
    """``EXAMPLE_CONFIG`` (the annotated example ``init`` writes), looked up when asked for:
    importing the config package at start-up would cost ``--help`` a fifth of its time."""
    if name == "EXAMPLE_CONFIG":
        from dropbox_sync.config import example

        return example.EXAMPLE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dropbox-sync",
        description="Upload CSV files dropped into inbox folders to Infiniti's non-interactive import.",
    )
    parser.add_argument("--version", action="version", version=f"dropbox-sync {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help=f"config file (default: ${paths.CONFIG_ENV}, else the site config dir)",
    )
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
    check.add_argument(
        "--online",
        action="store_true",
        help="also prove URL, TLS and credentials by posting an empty CSV (a no-op import)",
    )
    preview = command(
        "preview",
        cmd_preview,
        "show a file as Infiniti would receive it (encoding, column mapping) and every problem found; sends nothing",
    )
    preview.add_argument("file", type=Path)
    preview.add_argument(
        "--inbox", help="read it as this inbox would (default: the inbox whose folder holds it, else the first)"
    )
    preview.add_argument(
        "--rows", type=positive_count, default=10, metavar="N", help="rows to show (default %(default)s)"
    )
    diff = command(
        "diff",
        cmd_diff,
        "what a file would change in Infiniti against the roster memory: added, "
        "changed (old and new values), unchanged, leavers; sends nothing",
    )
    diff.add_argument("file", type=Path)
    diff.add_argument(
        "--inbox", help="read it as this inbox would (default: the inbox whose folder holds it, else the first)"
    )
    status = command("status", cmd_status, "per inbox: waiting and held files and why, last success and failure")
    status.add_argument("--json", action="store_true", help="print JSON for monitoring tools")
    history = command("history", cmd_history, "past imports, newest first: outcome, users created/updated/failed")
    history.add_argument("--inbox", metavar="NAME", help="only this inbox")
    history.add_argument("--since", metavar="DATE", help="only imports finished since DATE (2026-11-25, local time)")
    history.add_argument("--limit", type=positive_count, metavar="N", help="at most N entries")
    history.add_argument("--json", action="store_true", help="print JSON")
    approve = command("approve", cmd_approve, "send a file the shrink guard put in held/ (it goes next)")
    approve.add_argument("files", nargs="+", help="names in an inbox's held/ folder (archived or as dropped)")
    approve.add_argument(
        "--force", action="store_true", help="approve even though a newer file of the same import was imported since"
    )
    discard = command("discard", cmd_discard, "file a held file in failed/ without sending it")
    discard.add_argument("files", nargs="+", help="names in an inbox's held/ folder (archived or as dropped)")
    retry = command("retry", cmd_retry, "move files from failed/ back into their inbox to be sent again")
    retry.add_argument("files", nargs="*", help="archived names or paths (default: every file in failed/)")
    set_password = command(
        "set-password", cmd_set_password, "store an inbox's password in the OS keyring (for password_keyring = true)"
    )
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

    service_cli.configure_parser(
        command("service", service_cli.command, "run as an OS service: install, uninstall, start, stop, status")
    )
    return parser


def entry() -> int:
    """The process's entry point (the console script, ``python -m dropbox_sync``): ``main``,
    then the exit made cheap.

    At exit the interpreter's last garbage collections walk every object still alive: some
    30,000 after the imports (modules, classes, functions), about 35 ms of CPU, a sixth of
    ``once`` on an empty inbox (bench/bench_startup.py). They all die with the process:
    ``gc.freeze`` moves them out of the collector's sight. Only here, never in ``main``,
    which tests and the service hosts call in processes that go on."""
    code = main()
    # Everything main opened is closed; loguru's sinks are removed by its atexit hook and
    # ours flush every line (log.DailyFileSink), so no cleanup waits on the collector.
    gc.freeze()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    # Every byte any command prints goes through the scrubbing layer (redact.py).
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = (s if s is None or isinstance(s, ScrubbingStream) else ScrubbingStream(s) for s in saved)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = saved


def _main(argv: Sequence[str] | None) -> int:
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


# -- commands ---------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from dropbox_sync.service.core import run_service

    stop = threading.Event()
    stop_on_signals(stop)
    # The same core the Windows service, systemd and launchd run (minus their reporting).
    run_service(config_path(args), stop, verbose=args.verbose)
    return OK


def cmd_once(args: argparse.Namespace) -> int:
    from dropbox_sync.pipeline.discover import FirstLook

    cfg = load_config(args, sending=True)
    look = FirstLook(cfg.inboxes)  # before the pipeline's imports: they count toward settling
    start_file_logging(args, cfg)
    stop = threading.Event()
    stop_on_signals(stop)
    from dropbox_sync.session import pipeline_session

    # A short run writes its report pages once, at its end; a long one also every few seconds.
    with pipeline_session(cfg, once=True) as pipeline:
        result = pipeline.once(stop, look=look)
    for inbox, reason in result.held.items():
        get_logger().error('inbox "{}": not worked: {}', inbox, reason)
    if result.held:
        return HELD
    return FAILED if result.failed else OK


def cmd_send(args: argparse.Namespace) -> int:
    import tempfile

    from dropbox_sync.pipeline.client import ImportClient
    from dropbox_sync.pipeline.prepare import prepare
    from dropbox_sync.pipeline.prepared import Rejection

    cfg = load_config(args, sending=True)
    inbox = choose_inbox(cfg, args.inbox)
    path = existing_file(args.file)
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
        get_logger().error("HTTP {}: {}", reply.status, reply.summary)
        return HELD
    if reply.success is None:
        get_logger().error("HTTP {}: the server did not give an Infiniti import reply", reply.status)
        return HELD
    return OK if reply.success else FAILED


def _progress_bar(size: int):
    """A bar on stderr for big files when a person watches (stdout is a terminal)."""
    from dropbox_sync.progress import MIN_BYTES, ProgressBar

    if size < MIN_BYTES or not sys.stdout.isatty():
        return None
    return ProgressBar(size, sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    from dropbox_sync.commands.check import run_check

    cfg = load_config(args, sending=args.online)
    return run_check(cfg, args.files, online=args.online, out=sys.stdout)


def cmd_demo(args: argparse.Namespace) -> int:
    from dropbox_sync.commands.demo import run_demo

    return run_demo(keep=not args.clean, out=sys.stdout)


def cmd_emulator(args: argparse.Namespace) -> int:
    from dropbox_sync.emulator.cli import command

    stop = threading.Event()
    stop_on_signals(stop)
    return command(args, stop)
