"""The Windows service: the class the SCM runs, and install/uninstall/start/stop/status.

Hosting. The SCM starts pywin32's ``pythonservice.exe``, which reads the
class to load from ``HKLM\\...\\Services\\<name>\\PythonClass`` and calls its
``SvcRun``. In a venv that host fails with error 1053 and no other symptom
when it cannot find ``pythonXY.dll`` or ``pywintypesXY.dll`` (pywin32 #1451,
#2056): a service has neither the technician's PATH nor the venv's DLL
directories. So install copies ``pythonservice.exe`` into the venv root
(``sys.prefix``, where pywin32's own ``LocatePythonServiceExe`` puts it, and
where ``pyvenv.cfg`` makes the embedded interpreter use the venv's
site-packages) together with the DLLs it links against, and registers that
copy by full path (``windows_setup.py``, with the folder grants).

Configuration. The config path is stored in the service's registry
parameters at install time, so the service finds it whatever its working
directory (System32). Logs go to the site log dir (C:\\ProgramData\\...),
never a profile dir (DESIGN §8.10). Start, stop and failures also go to the
Application Event Log under the service's name.

Control. ``SvcStop`` answers at once with STOP_PENDING and a wait hint that
covers the drain (the SCM gives a control handler 30 s; DESIGN §8.11), then
only sets the stop flag. Recovery: restart after 10 s, 60 s, then every 5 min,
also when the service stops itself with an error (the journal on a disk not
mounted yet, a crash). A config error is different: no restart can fix it, so
the service logs it to the Event Log and stops cleanly (exit code 0), which
the recovery actions ignore (SERVICE_FAILURE_ACTIONS_FLAG: "failure actions
are queued ... if it enters the SERVICE_STOPPED state but the dwWin32ExitCode
... is not ERROR_SUCCESS", learn.microsoft.com winsvc.h). systemd does the same
with RestartPreventExitStatus=2.
"""

from __future__ import annotations

import getpass
import sys
import threading
import time
from pathlib import Path

from dropbox_sync import paths
from dropbox_sync.errors import ConfigError, ServiceError, ServiceFailed, Win32Error
from dropbox_sync.service import DESCRIPTION, DISPLAY_NAME, SERVICE_NAME, ServiceOptions
from dropbox_sync.service import win32_host as host
from dropbox_sync.service import win32_scm as scm
from dropbox_sync.service.core import (
    STOP_MARGIN,
    Reporter,
    console_for_host,
    run_service,
    status_line,
    stop_budget,
)
from dropbox_sync.service.plan import (
    DEFAULT_STOP_TIMEOUT,
    InstallFacts,
    read_facts,
    remove_data,
)
from dropbox_sync.service.windows_setup import (
    WELL_KNOWN,
    grant_folders,
    host_dir,
    prepare_host,
    require_readable_python,
    warn_about_shares,
)

CLASS_STRING = "dropbox_sync.service.windows.DropboxSyncService"
CONFIG_PARAMETER = "ConfigPath"
DEFAULT_ACCOUNT = "NT AUTHORITY\\LocalService"
FAILURE_DELAYS_MS = (10_000, 60_000, 300_000)
FAILURE_RESET_SECONDS = 24 * 3600
START_WAIT_HINT_MS = 30_000
START_TIMEOUT = 60.0  # seconds `service start` waits to see RUNNING
POLL = 0.5

# -- the service the SCM runs -------------------------------------------------------


class _ScmReporter(Reporter):
    def __init__(self, service: DropboxSyncService) -> None:
        self.service = service

    def starting(self, config) -> None:
        self.service.stop_hint_ms = int(stop_budget(config) * 1000)

    def ready(self, pipeline) -> None:
        self.service.ReportServiceStatus(scm.SERVICE_RUNNING)
        host.log_event("info", f"{self.service.name} started: {status_line(pipeline.snapshots())}")

    def failed(self, error: BaseException) -> None:
        if isinstance(error, ConfigError):
            host.log_event(
                "error",
                f"{self.service.name} cannot run: {error}. Not restarted automatically: "
                "fix the config (check it with: dropbox-sync check), then start the service.",
            )
            return
        host.log_event("error", f"{self.service.name} cannot run: {error}")


class DropboxSyncService(host.service_framework_base()):
    _svc_name_ = SERVICE_NAME
    _svc_display_name_ = DISPLAY_NAME
    _svc_description_ = DESCRIPTION

    def __init__(self, args) -> None:
        # The name the SCM started us under (several instances may be installed);
        # set before the base class registers the Event Log source with it.
        self._svc_name_ = args[0]
        super().__init__(args)
        self.stop_requested = threading.Event()
        self.stop_hint_ms = int((DEFAULT_STOP_TIMEOUT + STOP_MARGIN) * 1000)

    @property
    def name(self) -> str:
        return self._svc_name_

    def SvcRun(self) -> None:  # noqa: N802 - pywin32's name
        # pywin32's SvcRun reports RUNNING before any work; we report it from
        # the core once every observer runs, and START_PENDING until then.
        self.ReportServiceStatus(scm.SERVICE_START_PENDING, waitHint=START_WAIT_HINT_MS)
        self.SvcDoRun()
        self.ReportServiceStatus(scm.SERVICE_STOP_PENDING, waitHint=self.stop_hint_ms)

    def SvcDoRun(self) -> None:  # noqa: N802
        config_path = configured_config_path(self.name)
        try:
            run_service(config_path, self.stop_requested, reporter=_ScmReporter(self), console=console_for_host())
        except ConfigError:
            return  # in the Event Log already; a clean stop, so the recovery actions leave it stopped
        except Exception as exc:
            # Already in the Event Log (reporter.failed). Raising makes the host
            # report an error exit, which triggers the recovery actions.
            raise ServiceFailed(f"{self.name} stopped: {exc}") from None
        host.log_event("info", f"{self.name} stopped")

    def SvcStop(self) -> None:  # noqa: N802
        self.ReportServiceStatus(scm.SERVICE_STOP_PENDING, waitHint=self.stop_hint_ms)
        self.stop_requested.set()

    SvcShutdown = SvcStop  # noqa: N815 - machine shutdown: the same orderly stop


def configured_config_path(name: str) -> Path:
    """The config path baked in at install, else the site default (always absolute)."""
    stored = scm.get_parameter(name, CONFIG_PARAMETER)
    return Path(stored) if stored else paths.default_config_path()


# -- install --------------------------------------------------------------------------


def install(opts: ServiceOptions) -> int:
    if opts.destdir is not None:
        raise ServiceError("--destdir stages Linux/macOS files; on Windows install for real")
    _require_admin()
    facts = read_facts(opts.config_path)
    account = opts.account or DEFAULT_ACCOUNT
    password = _password_for(account, opts.password)
    require_readable_python()
    exe = prepare_host(host_dir(), host.host_files(), opts)
    _register(opts.name, exe, account, password, opts)
    scm.set_parameter(opts.name, CONFIG_PARAMETER, str(opts.config_path))
    # Real Windows accepts all of these; Wine and old builds lack some, and the
    # service still works without them, so each one only warns.
    recovers = _best_effort(
        opts,
        "the recovery actions (restart on failure)",
        scm.set_failure_actions,
        opts.name,
        delays_ms=FAILURE_DELAYS_MS,
        reset_seconds=FAILURE_RESET_SECONDS,
    )
    _best_effort(opts, "restart after an error exit", scm.set_failure_actions_on_error_exit, opts.name)
    _best_effort(opts, "a service SID (NT SERVICE\\name)", scm.set_unrestricted_sid, opts.name)
    if account.lower() not in WELL_KNOWN:  # built-in service accounts hold the right already
        _best_effort(opts, f"'Log on as a service' for {account}", host.grant_service_logon_right, account)
    host.register_event_source(opts.name)
    recovery = "restarts after 10 s, 60 s, then every 5 min on failure" if recovers else "NO automatic restart"
    opts.say(
        f"service {opts.name}: runs as {account}, starts automatically (delayed), {recovery}; config {opts.config_path}"
    )
    if opts.grant:
        grant_folders(facts, account, opts)
    warn_about_shares(facts, account, opts)
    if facts.problem:
        opts.say(
            f"warning: the config does not load yet: {facts.problem}\n"
            "  the service will not run until this is fixed (check with: dropbox-sync check)"
        )
    if opts.start:
        return start(opts)
    opts.say(f"start it with: dropbox-sync service start  (or: net start {opts.name})")
    return 0


def _require_admin() -> None:
    if not host.is_admin():
        raise ServiceError(
            "this needs administrator rights: open PowerShell with 'Run as administrator' and run the command again"
        )


def _password_for(account: str, password: str | None) -> str | None:
    """Built-in accounts and managed service accounts (NAME$) take no password."""
    if account.lower() in WELL_KNOWN or account.endswith("$"):
        return None
    if password == "-":
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin or not sys.stdin.isatty():
        raise ServiceError(
            f"--password is required for the account {account}: '--password -' reads it from "
            "standard input; from a terminal, leave it out to be asked"
        )
    return getpass.getpass(f"password for {account}: ")


def _register(name: str, exe: Path, account: str, password: str | None, opts: ServiceOptions) -> None:
    args = (name, DISPLAY_NAME, DESCRIPTION, CLASS_STRING, exe)
    # Automatic, delayed: shares and the domain logon are up by then, and a
    # school server's boot is not slowed by an upload service.
    how = {"start_type": scm.SERVICE_AUTO_START, "delayed": True, "account": account, "password": password}
    try:
        scm.install_service(*args, **how)
        opts.say(f"installed service {name}, host {exe}")
    except Win32Error as exc:
        if exc.winerror == scm.ERROR_SERVICE_MARKED_FOR_DELETE:
            raise ServiceError(
                f"service {name} is still being deleted: close the Services window "
                "(services.msc) and any 'sc' sessions, then try again"
            ) from None
        if exc.winerror != scm.ERROR_SERVICE_EXISTS:
            raise
        scm.update_service(*args, **how)
        opts.say(f"updated the existing service {name}, host {exe}")


def _best_effort(opts: ServiceOptions, what: str, action, *args, **kwargs) -> bool:
    """Settings that older Windows (or Wine) may lack; the service works without them."""
    try:
        action(*args, **kwargs)
    except (Win32Error, NotImplementedError, ValueError) as exc:
        opts.say(f"warning: could not set {what}: {exc}")
        return False
    return True


# -- uninstall, start, stop, status ---------------------------------------------------


def uninstall(opts: ServiceOptions) -> int:
    if opts.destdir is not None:
        raise ServiceError("--destdir stages Linux/macOS files; it has no meaning on Windows")
    _require_admin()
    status = _status_or_none(opts.name)
    if status is None:
        opts.say(f"service {opts.name} is not installed")
    else:
        if status.state != scm.SERVICE_STOPPED:
            stop(opts)
        scm.remove_service(opts.name)
        opts.say(f"removed service {opts.name} (config, logs and inbox folders are kept)")
    if opts.remove_data:
        _remove_data(opts)
    return 0


def _remove_data(opts: ServiceOptions) -> None:
    try:
        facts = read_facts(opts.config_path)
    except Exception:  # noqa: BLE001 - a broken config must not block removing our own files
        facts = InstallFacts(opts.config_path, (), None, None, (), DEFAULT_STOP_TIMEOUT, None)
    remove_data(facts, opts.say)


def start(opts: ServiceOptions) -> int:
    _require_admin()
    try:
        scm.start_service(opts.name)
    except Win32Error as exc:
        if exc.winerror == scm.ERROR_SERVICE_ALREADY_RUNNING:
            opts.say(f"service {opts.name} is already running")
            return 0
        raise ServiceError(_explain(opts.name, exc)) from None
    status = _wait_for(opts.name, {scm.SERVICE_RUNNING, scm.SERVICE_STOPPED}, START_TIMEOUT)
    if status.state == scm.SERVICE_RUNNING:
        opts.say(f"service {opts.name} is running")
        return 0
    logs = _log_dir(configured_config_path(opts.name))
    raise ServiceError(
        f"service {opts.name} did not start ({status.state_name}, exit code "
        f"{status.win32_exit_code}/{status.service_exit_code}): see the Application Event Log "
        f"(source {opts.name}) and the log files in {logs}"
    )


def stop(opts: ServiceOptions) -> int:
    _require_admin()
    try:
        scm.stop_service(opts.name)
    except Win32Error as exc:
        if exc.winerror == scm.ERROR_SERVICE_NOT_ACTIVE:
            opts.say(f"service {opts.name} is not running")
            return 0
        raise ServiceError(_explain(opts.name, exc)) from None
    budget = _stop_budget(opts)
    status = _wait_for(opts.name, {scm.SERVICE_STOPPED}, budget)
    if status.state != scm.SERVICE_STOPPED:
        raise ServiceError(f"service {opts.name} did not stop within {budget:g} s ({status.state_name})")
    opts.say(f"service {opts.name} stopped")
    return 0


def status(opts: ServiceOptions) -> int:
    """Print the service's state; 0 when running, 1 otherwise (like ``sc query``'s caller wants)."""
    current = _status_or_none(opts.name)
    if current is None:
        opts.say(f"service {opts.name}: not installed")
        return 1
    config = scm.query_config(opts.name)
    opts.say(f"service {opts.name}: {current.state_name}")
    opts.say(f"  start:   {scm.START_TYPE_NAMES.get(config.start_type, config.start_type)}")
    opts.say(f"  account: {config.account}")
    opts.say(f"  host:    {config.binary_path}")
    config_path = configured_config_path(opts.name)
    opts.say(f"  config:  {config_path}")
    opts.say(f"  logs:    {_log_dir(config_path)}  (and the Application Event Log, source {opts.name})")
    if current.state == scm.SERVICE_STOPPED and current.win32_exit_code:
        opts.say(f"  last exit: Windows error {current.win32_exit_code}, service code {current.service_exit_code}")
    return 0 if current.state == scm.SERVICE_RUNNING else 1


def _log_dir(config_path: Path) -> Path:
    """Where the service writes its log files: the config's log_dir, else the site log dir."""
    try:
        configured = read_facts(config_path).log_dir
    except Exception:  # noqa: BLE001 - a broken config must not hide the status
        configured = None
    return configured or paths.log_dir()


def _status_or_none(name: str) -> scm.ServiceStatus | None:
    try:
        return scm.query_status(name)
    except Win32Error as exc:
        if exc.winerror == scm.ERROR_SERVICE_DOES_NOT_EXIST:
            return None
        raise


def _wait_for(name: str, states: set[int], timeout: float) -> scm.ServiceStatus:
    """Poll the SCM until the service reaches one of ``states`` or ``timeout`` passes."""
    pause = threading.Event()  # never set: an interruptible pause, not time.sleep
    deadline = time.monotonic() + timeout
    current = scm.query_status(name)
    while current.state not in states and time.monotonic() < deadline:
        pause.wait(POLL)
        current = scm.query_status(name)
    return current


def _stop_budget(opts: ServiceOptions) -> float:
    try:
        return read_facts(opts.config_path).stop_budget
    except Exception:  # noqa: BLE001 - stopping must work even with a broken config
        return DEFAULT_STOP_TIMEOUT + STOP_MARGIN


def _explain(name: str, exc: Win32Error) -> str:
    if exc.winerror == scm.ERROR_SERVICE_DOES_NOT_EXIST:
        return f"service {name} is not installed (dropbox-sync service install)"
    if exc.winerror == scm.ERROR_SERVICE_REQUEST_TIMEOUT:
        return (
            f"{exc}. The service host did not start: usually pythonXY.dll or pywintypesXY.dll was not "
            "found beside pythonservice.exe. Run 'dropbox-sync service install' again from the venv's "
            "Scripts folder and see docs/install-windows.md, Troubleshooting"
        )
    if exc.winerror == scm.ERROR_SERVICE_LOGON_FAILED:
        return (
            f"{exc}. Windows could not log the service on: check the account's password (install again "
            "with --account and --password) and that it holds 'Log on as a service'"
        )
    if exc.winerror == scm.ERROR_ACCESS_DENIED:
        return f"{exc}: run this from an administrator prompt"
    return str(exc)
