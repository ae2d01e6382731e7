"""Ctrl-C never lands while a module is imported or a codec looked up.

A KeyboardInterrupt raised in importlib's own frames can leave a module's lock held (CPython
3.11), one raised in a class body's ``__set_name__`` becomes a RuntimeError with a traceback,
and a codec lookup called from C can swallow it. Lost, the command goes on as if no
Ctrl-C came, and the next thread to import that module waits forever: seen as a ``benchboard run``
interrupted 0.3 s after its start that measured on, its device thread then stuck writing the
report (tests/integration/test_cli_outcomes.py, under load). A Ctrl-C that lands there is put
off and delivered again every 20 ms until the main thread is out of it.
"""

from __future__ import annotations

import _thread
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

RETRY_S = 0.02


def _put_off(frame) -> bool:
    """Whether a module is being imported (its body included: a KeyboardInterrupt raised in a
    class body's ``__set_name__`` reaches the user as a RuntimeError) or a codec searched for."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib") or frame.f_globals.get(
            "__name__", ""
        ).startswith("encodings"):
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


@contextmanager
def cancelling_on_signals(cancel: Callable[[], object]) -> Iterator[list[int]]:
    """While a run measures, Ctrl-C and SIGTERM (``kill``, ``docker stop``, a CI job's time limit)
    both ``cancel`` it, so what was measured is stored as ``cancelled`` and reported; killed
    outright, the run stayed ``running`` with no report. Yields the signals received, in order.
    After the first SIGTERM its default is back: a second one ends the process at once, for a
    cancel that cannot finish."""
    received: list[int] = []

    def handle(signum: int, _frame) -> None:
        received.append(signum)
        if signum == signal.SIGTERM:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        cancel()

    previous = {signal.SIGINT: signal.signal(signal.SIGINT, handle)}
    # Never over a handler someone else set, nor a SIGTERM ignored on purpose.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, handle)
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
