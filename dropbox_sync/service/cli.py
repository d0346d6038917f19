"""`dropbox-sync service ...`: install, uninstall, start, stop, status, and the host's `run`.

The main CLI calls ``configure_parser`` once and ``command`` with the parsed
arguments. Imports stay light here: a backend (and pywin32 on Windows) loads
only when an action runs, so ``dropbox-sync --help`` stays fast.

``service run`` is what a service host starts (the systemd unit's ExecStart,
the launchd ProgramArguments; Windows hosts the class in pythonservice.exe
instead). It is ``run`` plus the host protocol: sd_notify when
``$NOTIFY_SOCKET`` is set, and no console when asked. It is left out of the
help listing because people start the service, not this.

Exit codes: 0 done (status: running); 1 the action failed or, for status,
the service is not running; 2 usage or config error (from the main CLI).
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from dropbox_sync import paths

ACTIONS = ("install", "uninstall", "start", "stop", "status")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="service_action", metavar="{" + ",".join(ACTIONS) + "}", required=True)

    def action(name: str, text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=text, description=text)
        sub.add_argument(
            "--name",
            default=_default_name(),
            metavar="NAME",
            help="service name (default %(default)s); install more under other names, one per config",
        )
        return sub

    install = action("install", "register the service to start at boot (runs as a dedicated account)")
    install.add_argument(
        "--account",
        metavar="ACCOUNT",
        help=r"Windows: the account to run as (default NT AUTHORITY\LocalService; use "
        r"DOMAIN\user or a managed DOMAIN\name$ for network shares). Linux/macOS: the "
        "user (default dropbox-sync on Linux, root on macOS)",
    )
    install.add_argument(
        "--password",
        metavar="-",
        help="Windows: '-' reads the password of --account from standard input (without "
        "it you are asked); never the password itself: others see command lines",
    )
    install.add_argument("--start", action="store_true", help="also start the service now")
    install.add_argument(
        "--no-grant",
        dest="grant",
        action="store_false",
        help="do not give the account rights on the inbox, state and log folders",
    )
    install.add_argument(
        "--destdir",
        type=Path,
        metavar="DIR",
        help="Linux/macOS: only write the unit/plist under DIR (packaging); change nothing else",
    )
    uninstall = action("uninstall", "stop and unregister the service (config, logs and inboxes are kept)")
    uninstall.add_argument("--destdir", type=Path, metavar="DIR", help="Linux/macOS: remove the staged file under DIR")
    uninstall.add_argument(
        "--remove-data",
        action="store_true",
        help="also delete the config file, the journal and dropbox-sync's own log files "
        "(inbox folders and their processed/failed files are never touched)",
    )
    action("start", "start the service")
    action("stop", "stop the service (the current upload gets stop_timeout to finish)")
    action("status", "show whether the service runs, as what, with which config")
    run = actions.add_parser("run", description="run the way a service host does (systemd, launchd)")
    run.add_argument(
        "--console",
        choices=("stderr", "none"),
        default="stderr",
        help="where console log lines go; the daily log files get them either way",
    )


def _default_name() -> str:
    from dropbox_sync.service import SERVICE_NAME

    return SERVICE_NAME


def command(args: argparse.Namespace) -> int:
    from dropbox_sync.service import ServiceOptions
    from dropbox_sync.service.chooser import backend

    config_path = (args.config if args.config is not None else paths.default_config_path()).absolute()
    _refuse_password_on_the_command_line(getattr(args, "password", None))
    if args.service_action == "run":
        return _run_as_host(config_path, args)
    opts = ServiceOptions(
        name=args.name,
        config_path=config_path,
        out=sys.stdout,
        account=getattr(args, "account", None),
        password=getattr(args, "password", None),
        start=getattr(args, "start", False),
        grant=getattr(args, "grant", True),
        destdir=args.destdir.absolute() if getattr(args, "destdir", None) else None,
        remove_data=getattr(args, "remove_data", False),
    )
    # A ServiceError goes up to cli.main, the one place that maps errors to exit codes (1).
    return int(getattr(backend(), args.service_action)(opts) or 0)


def _refuse_password_on_the_command_line(password: str | None) -> None:
    """A password in argv is in the process list and the shell history: refuse it, unshown."""
    if password in (None, "-"):
        return
    from dropbox_sync.errors import UsageError
    from dropbox_sync.redact import register_secret

    register_secret(password)  # whatever prints it from now on prints ***
    raise UsageError(
        "service install: --password takes only '-' (the password then comes from standard "
        "input); leave it out to be asked. The password itself is never taken on the command "
        "line, where other users and the shell history would see it: nothing was installed."
    )


def _run_as_host(config_path: Path, args: argparse.Namespace) -> int:
    from dropbox_sync.service.core import DiscardStream, Reporter, console_for_host, run_service
    from dropbox_sync.service.sdnotify import Notifier
    from dropbox_sync.shutdown import stop_on_signals

    stop = threading.Event()
    stop_on_signals(stop)
    reporter = Reporter()
    if Notifier.from_environ().enabled:
        from dropbox_sync.service.systemd import SystemdReporter

        reporter = SystemdReporter.from_environ()
    console = DiscardStream() if args.console == "none" else console_for_host()
    run_service(config_path, stop, reporter=reporter, console=console, verbose=args.verbose)
    return 0
