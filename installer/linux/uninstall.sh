#!/bin/sh
# Remove the dropbox-sync service and its venv. Config, journal, logs and every
# inbox folder are kept unless --remove-data is given; inbox folders (and the
# processed/ and failed/ files in them) are never deleted.
#
#   sudo sh installer/linux/uninstall.sh [--remove-data]
#
# Honours the same PREFIX, CONFIG and DESTDIR as install.sh. Safe to run twice.
set -eu

PREFIX=${PREFIX:-/opt/dropbox-sync}
CONFIG=${CONFIG:-/etc/dropbox-sync/config.toml}
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
    rm -f "$DESTDIR/etc/systemd/system/dropbox-sync.service"
    if [ -n "$remove_data" ]; then
        rm -f "$DESTDIR$CONFIG"
        [ -n "$DESTDIR" ] || rm -rf /var/lib/dropbox-sync /var/log/dropbox-sync
    fi
fi
if [ -n "$remove_data" ]; then
    rm -f "$(dirname "$DESTDIR$CONFIG")/dropbox-sync.env"
    rmdir "$(dirname "$DESTDIR$CONFIG")" 2>/dev/null || true
fi
rm -rf "$venv"
rmdir "$DESTDIR$PREFIX" 2>/dev/null || true
printf 'uninstall.sh: removed the service and %s\n' "$venv"
