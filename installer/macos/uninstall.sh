#!/bin/sh
# Remove the dropbox-sync LaunchDaemon and its venv. Config, journal, logs and
# inbox folders are kept unless --remove-data is given; inbox folders (and the
# processed/ and failed/ files in them) are never deleted.
#
#   sudo sh installer/macos/uninstall.sh [--remove-data]
#
# Honours the same PREFIX, CONFIG and DESTDIR as install.sh. Safe to run twice.
set -eu

PREFIX=${PREFIX:-/usr/local/dropbox-sync}
CONFIG=${CONFIG:-/Library/Application Support/dropbox-sync/config.toml}
DESTDIR=${DESTDIR:-}
venv="$DESTDIR$PREFIX/venv"
remove_data=""
for arg in "$@"; do
    case "$arg" in
        --remove-data) remove_data="--remove-data" ;;
        *) printf 'uninstall.sh: unknown argument %s\n' "$arg" >&2; exit 2 ;;
    esac
done
if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
    printf 'uninstall.sh: run as root (sudo), or set DESTDIR\n' >&2
    exit 2
fi

if [ -x "$venv/bin/dropbox-sync" ]; then
    if [ -n "$DESTDIR" ]; then
        "$venv/bin/dropbox-sync" --config "$CONFIG" service uninstall --destdir "$DESTDIR" $remove_data
    else
        "$venv/bin/dropbox-sync" --config "$CONFIG" service uninstall $remove_data
    fi
else
    # The venv is gone already: remove what we can by hand so a second run still cleans up.
    [ -n "$DESTDIR" ] || launchctl bootout system/dropbox-sync 2>/dev/null || true
    rm -f "$DESTDIR/Library/LaunchDaemons/dropbox-sync.plist"
    if [ -n "$remove_data" ]; then rm -f "$DESTDIR$CONFIG"; fi
fi
rm -rf "$venv"
rmdir "$DESTDIR$PREFIX" 2>/dev/null || true
printf 'uninstall.sh: removed the daemon and %s\n' "$venv"
