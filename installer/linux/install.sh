#!/bin/sh
# Install dropbox-sync as a systemd service: a venv, the package, a config, the unit.
#
#   sudo sh installer/linux/install.sh [--start]
#
# Safe to run again (upgrade, or after changing inbox paths in the config: the
# unit's ReadWritePaths are taken from the config). The logic lives in Python
# ("dropbox-sync service install"); this script only makes the venv around it.
#
# Environment:
#   PREFIX    where the venv goes: $PREFIX/venv       (default /opt/dropbox-sync)
#   CONFIG    the config the service reads             (default /etc/dropbox-sync/config.toml)
#   DESTDIR   stage everything under this root instead (packaging, tests): no system
#             user, no systemctl, root not needed. The staged venv works at its staged
#             path; the unit names the final paths ($PREFIX, $CONFIG).
#   PYTHON    the Python 3.11+ that builds the venv   (default python3)
#   SOURCE    what pip installs                        (default: this source tree)
#   PIP_ARGS  extra pip arguments, e.g. "--no-index --find-links /media/wheels"
set -eu

here=$(cd "$(dirname "$0")" && pwd)
PREFIX=${PREFIX:-/opt/dropbox-sync}
CONFIG=${CONFIG:-/etc/dropbox-sync/config.toml}
DESTDIR=${DESTDIR:-}
PYTHON=${PYTHON:-python3}
SOURCE=${SOURCE:-$(cd "$here/../.." && pwd)}
PIP_ARGS=${PIP_ARGS:-}
venv="$DESTDIR$PREFIX/venv"
config_file="$DESTDIR$CONFIG"
env_file="$(dirname "$config_file")/dropbox-sync.env"

say() { printf 'install.sh: %s\n' "$*"; }
fail() { printf 'install.sh: %s\n' "$*" >&2; exit 2; }

command -v "$PYTHON" >/dev/null 2>&1 || fail "$PYTHON not found: install Python 3.11 or newer (apt install python3 python3-venv)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || fail "$PYTHON is older than 3.11"
if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
    fail "run as root (sudo), or set DESTDIR to stage the files without installing"
fi

if [ ! -x "$venv/bin/python" ]; then
    say "creating the venv $venv"
    "$PYTHON" -m venv "$venv" || fail "could not create a venv (on Debian/Ubuntu: apt install python3-venv)"
fi
say "installing dropbox-sync from $SOURCE"
# -I: pip sees only the venv, whatever PYTHONPATH or user site the shell has.
# shellcheck disable=SC2086 # PIP_ARGS is a list of arguments on purpose
"$venv/bin/python" -I -m pip install --quiet --disable-pip-version-check $PIP_ARGS "$SOURCE"

if [ ! -f "$config_file" ]; then
    "$venv/bin/dropbox-sync" --config "$config_file" init
fi
if [ ! -f "$env_file" ]; then
    # The unit reads this (as root) before dropping privileges: password_env works without
    # the password ever being in the config or on a command line.
    umask 077
    printf '# Environment for the dropbox-sync service (mode 0600, read by systemd).\n# DROPBOX_SYNC_PASSWORD=...\n' >"$env_file"
    umask 022
    say "wrote $env_file (put DROPBOX_SYNC_PASSWORD=... here if the config uses password_env)"
fi

if [ -n "$DESTDIR" ]; then
    exec "$venv/bin/dropbox-sync" --config "$CONFIG" service install --destdir "$DESTDIR"
fi
"$venv/bin/dropbox-sync" --config "$CONFIG" service install "$@"
# The service user reads the config; nobody else needs to.
if chgrp dropbox-sync "$CONFIG" 2>/dev/null; then chmod 0640 "$CONFIG"; fi
say "done. Edit $CONFIG, check it with: $venv/bin/dropbox-sync --config $CONFIG check --online"
