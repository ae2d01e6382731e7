"""One thread that stores results and publishes run states, in the order they were handed over.

The scheduler's device threads hand each config's result here and give the worker its next
config at once, so the result's write (a DuckDB transaction, ~7 ms) overlaps the next config's
build and warm-up instead of adding to the sweep's wall time (issue 16). One thread keeps the
writes and the listeners' events in the order their states happened.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future


class Recorder:
    def __init__(self, name: str = "recorder"):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        # Reentrant: a Ctrl-C handler that cancels a run may interrupt a submit on the same thread.
        self._closing = threading.RLock()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., object], *args) -> Future:
        """Run ``fn(*args)`` after everything handed over before it. Handed over by a job (on the
        recorder's own thread), it runs at once, as part of that job; once closed, too."""
        future: Future = Future()
        if threading.current_thread() is not self._thread:
            with self._closing:
                if not self._closed:
                    self._jobs.put((future, fn, args))
                    return future
            self._thread.join()  # after what was queued before the close
        _run(future, fn, args)
        return future

    def call(self, fn: Callable[..., object], *args):
        """``fn(*args)``'s value, once it has run after everything handed over before it."""
        return self.submit(fn, *args).result()

    def drain(self) -> None:
        """Return once everything handed over so far has run, and what it handed over in turn."""
        self.call(_nothing)

    def close(self) -> None:
        """Run what is queued, then stop; later jobs run on their caller's thread."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            _run(*job)


def _run(future: Future, fn: Callable[..., object], args: tuple) -> None:
    try:
        future.set_result(fn(*args))
    except BaseException as error:  # noqa: BLE001 - handed to whoever waits on the future
        future.set_exception(error)


def _nothing() -> None:
    return None
