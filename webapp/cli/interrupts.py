"""Ctrl-C never lands inside the import machinery or a codec lookup.

A KeyboardInterrupt raised in importlib's own frames can leave a module's lock held (CPython
3.11), and a codec lookup called from C can swallow it. Either way the command goes on as if no
Ctrl-C came, and the next thread to import that module waits forever: seen as a ``benchboard run``
interrupted 0.3 s after its start that measured on, its device thread then stuck writing the
report (tests/integration/test_cli_outcomes.py, under load). A Ctrl-C that lands there is put
off and delivered again a moment later, by when the main thread is out of it.
"""

from __future__ import annotations

import _thread
import signal
import threading

RETRY_S = 0.02


def _put_off(frame) -> bool:
    """Whether the innermost frame is the import machinery's, or a codec search is on the stack."""
    if frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
        return True
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith("encodings"):
            return True
        frame = frame.f_back
    return False


def _deliver(signum: int) -> None:
    # A real signal to the main thread, so that a wait it is in by then is interrupted too.
    if hasattr(signal, "pthread_kill"):
        signal.pthread_kill(threading.main_thread().ident, signum)
    else:  # Windows
        _thread.interrupt_main(signum)


def on_ctrl_c(signum: int, frame) -> None:
    if _put_off(frame):
        threading.Timer(RETRY_S, _deliver, args=(signum,)).start()
        return
    raise KeyboardInterrupt


def install() -> None:
    """Take Ctrl-C over from Python's default handler (never from a handler someone else set)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_ctrl_c)
