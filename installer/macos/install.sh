#!/bin/sh
# Install dropbox-sync as a macOS LaunchDaemon: a venv, the package, a config, the plist.
#
#   sudo sh installer/macos/install.sh [--account USER]
#
# Safe to run again (upgrade: the daemon is booted out and in again). The logic
# lives in Python ("dropbox-sync service install"); this script only makes the
# venv around it. launchd starts the daemon as soon as it is installed.
#
# Environment:
#   PREFIX    where the venv goes: $PREFIX/venv  (default /usr/local/dropbox-sync)
#   CONFIG    the config the daemon reads        (default /Library/Application Support/dropbox-sync/config.toml)
#   DESTDIR   stage the files under this root instead (packaging): no launchctl, root not needed
#   PYTHON    the Python 3.11+ that builds the venv (default python3)
#   SOURCE    what pip installs (default: this source tree)
#   PIP_ARGS  extra pip arguments, e.g. "--no-index --find-links /Volumes/USB/wheels"
set -eu

here=$(cd "$(dirname "$0")" && pwd)
PREFIX=${PREFIX:-/usr/local/dropbox-sync}
CONFIG=${CONFIG:-/Library/Application Support/dropbox-sync/config.toml}
DESTDIR=${DESTDIR:-}
PYTHON=${PYTHON:-python3}
SOURCE=${SOURCE:-$(cd "$here/../.." && pwd)}
PIP_ARGS=${PIP_ARGS:-}
venv="$DESTDIR$PREFIX/venv"

say() { printf 'install.sh: %s\n' "$*"; }
fail() { printf 'install.sh: %s\n' "$*" >&2; exit 2; }

command -v "$PYTHON" >/dev/null 2>&1 || fail "$PYTHON not found: install Python 3.11 or newer from python.org"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || fail "$PYTHON is older than 3.11"
if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
    fail "run as root (sudo), or set DESTDIR to stage the files without installing"
fi

if [ ! -x "$venv/bin/python" ]; then
    say "creating the venv $venv"
    "$PYTHON" -m venv "$venv"
fi
say "installing dropbox-sync from $SOURCE"
# -I: pip sees only the venv, whatever PYTHONPATH or user site the shell has.
# shellcheck disable=SC2086 # PIP_ARGS is a list of arguments on purpose
"$venv/bin/python" -I -m pip install --quiet --disable-pip-version-check $PIP_ARGS "$SOURCE"

if [ ! -f "$DESTDIR$CONFIG" ]; then
    "$venv/bin/dropbox-sync" --config "$DESTDIR$CONFIG" init
fi
if [ -n "$DESTDIR" ]; then
    exec "$venv/bin/dropbox-sync" --config "$CONFIG" service install --destdir "$DESTDIR"
fi
"$venv/bin/dropbox-sync" --config "$CONFIG" service install "$@"
say "done. Edit $CONFIG, check it with: $venv/bin/dropbox-sync --config '$CONFIG' check --online"
