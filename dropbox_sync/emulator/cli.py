"""`dropbox-sync emulator`: serve the emulator until told to stop.

The main CLI owns argument parsing and signals; it calls `configure_parser`
once and `command` with an event it sets on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import errno
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from dropbox_sync.emulator.accounts import DEFAULT_ACCOUNTS

if TYPE_CHECKING:
    from dropbox_sync.emulator.emulator import Emulator

DEFAULT_PORT = 8443
_ROLES = {"admin": True, "user": False}


def parse_account(value: str) -> tuple[str, str, bool]:
    """USER:PASSWORD[:admin|:user] -> (user, password, is_admin); the password may contain ':'."""
    user, sep, rest = value.partition(":")
    if not sep or not user:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD[:admin|:user]")
    password, _, role = rest.rpartition(":")
    if role in _ROLES and password:
        return user, password, _ROLES[role]
    return user, rest, True


def configure_parser(parser: argparse.ArgumentParser) -> None:
    default_user = next(iter(DEFAULT_ACCOUNTS))
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port to listen on, 0 for any free port (default %(default)s)"
    )
    parser.add_argument("--no-tls", dest="tls", action="store_false", help="serve plain HTTP instead of HTTPS")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where users, upload records and the CA are kept (default: a new temporary folder)",
    )
    parser.add_argument(
        "--account",
        dest="accounts",
        action="append",
        type=parse_account,
        default=None,
        metavar="USER:PASSWORD[:admin|:user]",
        help=f"an account that may log in (repeatable; default {default_user}:<password>:admin)",
    )
    parser.add_argument(
        "--library-group",
        dest="library_groups",
        action="append",
        default=[],
        metavar="NAME",
        help="add a library group to the predefined ones (repeatable)",
    )
    parser.add_argument(
        "--system-group",
        dest="system_groups",
        action="append",
        default=[],
        metavar="NAME",
        help="add a system group to the predefined ones (repeatable)",
    )
    parser.add_argument(
        "--library-groups-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="add the library groups listed in PATH, one per line (# starts a comment)",
    )
    parser.add_argument(
        "--system-groups-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="add the system groups listed in PATH, one per line (# starts a comment)",
    )
    parser.add_argument(
        "--ca-out", type=Path, default=None, metavar="PATH", help="also copy the CA certificate (PEM) to PATH"
    )
    parser.add_argument(
        "--keep-uploads", action="store_true", help="keep a copy of every uploaded file in STATE_DIR/uploads"
    )


def _accounts(args: argparse.Namespace) -> dict[str, tuple[str, bool]]:
    if not args.accounts:
        return dict(DEFAULT_ACCOUNTS)
    return {user: (password, admin) for user, password, admin in args.accounts}


def read_group_file(path: Path) -> list[str]:
    """Group names, one per line (as copied from Infiniti's list); blank lines and # comments skipped."""
    names = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.append(name)
    return names


def _groups(args: argparse.Namespace, defaults: tuple[str, ...], kind: str) -> tuple[str, ...]:
    """The predefined groups plus those named on the command line and in the file."""
    extra = list(getattr(args, f"{kind}_groups"))
    path = getattr(args, f"{kind}_groups_file")
    if path is not None:
        extra += read_group_file(path)
    return tuple(dict.fromkeys((*defaults, *extra)))


def _banner(emulator: Emulator, ca_file: Path | None, username: str) -> list[str]:
    users_url = emulator.import_url("users")
    lines = [f"Infiniti emulator listening on {emulator.base_url}"]
    lines.append(f"Library groups: {', '.join(emulator.library_groups)}")
    lines.append(f"System groups: {', '.join(emulator.system_groups)}")
    lines.append("  (add more with --library-group NAME, --system-group NAME, or --library-groups-file PATH)")
    lines.append(f"CA certificate: {ca_file}" if ca_file else "CA certificate: none (plain HTTP)")
    lines.append(f"Import URL (users): {users_url}")
    lines.append(f"Import URL (user groups): {emulator.import_url('userGroups', 'school1')}")
    cacert = f"--cacert {ca_file} " if ca_file else ""
    lines.append(f"Example: curl {cacert}-u {username}:<password> -F file=@users.csv {users_url}")
    lines.append("Press Ctrl+C to stop.")
    return lines


def command(args: argparse.Namespace, stop_event: threading.Event) -> int:
    # Imported here, not at the top: the main CLI imports this module to build its
    # parser on every start, and the server's imports (http.server, trustme,
    # cryptography) are only worth paying for when the emulator runs; so are tempfile and shutil.
    import shutil
    import tempfile

    from dropbox_sync.emulator.emulator import Emulator
    from dropbox_sync.emulator.importer import DEFAULT_LIBRARY_GROUPS, DEFAULT_SYSTEM_GROUPS

    try:
        library_groups = _groups(args, DEFAULT_LIBRARY_GROUPS, "library")
        system_groups = _groups(args, DEFAULT_SYSTEM_GROUPS, "system")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"emulator: cannot read a groups file: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 2
    made_state_dir = args.state_dir is None
    state_dir = Path(tempfile.mkdtemp(prefix="dropbox-sync-emulator-")) if made_state_dir else args.state_dir
    accounts = _accounts(args)
    emulator = Emulator(
        state_dir,
        host=args.host,
        port=args.port,
        tls=args.tls,
        accounts=accounts,
        library_groups=library_groups,
        system_groups=system_groups,
        keep_uploads=args.keep_uploads,
    )
    try:
        try:
            emulator.start()
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            print(f"emulator: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
            return 2
        try:
            ca_file = emulator.ca_file
            if ca_file is not None and args.ca_out is not None:
                try:
                    ca_file = emulator.copy_ca(args.ca_out)
                except OSError as exc:
                    print(
                        f"emulator: cannot write the CA certificate to {args.ca_out}: {exc.strerror or exc}",
                        file=sys.stderr,
                    )
                    return 2
            for line in _banner(emulator, ca_file, next(iter(accounts))):
                print(line, flush=True)
            stop_event.wait()
        finally:
            emulator.stop()
        return 0
    finally:
        if made_state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
