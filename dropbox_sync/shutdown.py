"""Asking for a stop: signal handlers only set the stop flag (the uvicorn server.py model).

Whoever owns the work then stops it in order: ``session.Session`` for the
pipeline (its docstring holds the shutdown order), the emulator for itself.
The Windows service's SvcStop sets the same kind of flag (service/windows.py).
"""

from __future__ import annotations

import signal
import threading


def stop_on_signals(stop: threading.Event) -> None:
    """Ctrl+C, SIGTERM (systemd, launchd) and Ctrl+Break set ``stop``; nothing else happens here."""

    def handler(signum: int, _frame: object) -> None:
        from loguru import logger  # here: loguru pulls in asyncio, which `--help` need not pay for

        logger.info("stop requested ({}); finishing the current upload", signal.Signals(signum).name)
        stop.set()

    for name in ("SIGINT", "SIGTERM", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)
