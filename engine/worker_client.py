"""The server side of a worker: starts ``python -m engine.worker``, sends jobs, survives its death.

A crash, an OOM kill, a timeout or a cancel fails only the job in flight: it
comes back as a FAILED Measurement with its reason, and the next ``run`` starts a
fresh worker. ``run`` never raises for anything that happens in the worker.

Stdout is read by a thread into a queue (one queue per worker process, so a
dead worker's leftovers never reach its successor); stderr is drained by a
thread into the ``engine.worker`` logger and a short tail kept for crash
messages, so neither pipe can fill up and block the worker.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import msgspec

from engine import worker_protocol as protocol
from engine.config import Job
from engine.errors import EngineError
from engine.result import FAILED, Measurement

log = logging.getLogger("engine.worker")

SHUTDOWN_GRACE_SECONDS = 5.0
STDERR_TAIL_LINES = 20
_EXITED = object()  # the reader thread's end-of-stdout marker


class WorkerStartError(EngineError):
    """The worker process did not come up (bad device, broken environment, start-up timeout)."""


@dataclass
class _Process:
    """One worker process and what its reader threads collect."""

    popen: subprocess.Popen
    events: queue.Queue = field(default_factory=queue.Queue)
    stderr_tail: collections.deque = field(
        default_factory=lambda: collections.deque(maxlen=STDERR_TAIL_LINES)
    )
    readers: list[threading.Thread] = field(default_factory=list)
    # Set when stdout reached EOF. The kernel closes a dying process's pipes a moment
    # before waitpid() can see it exit, so poll() alone can call a dead worker alive.
    stdout_closed: threading.Event = field(default_factory=threading.Event)
    # Set once it said "ready": before that it is importing torch and cannot read a shutdown.
    ready: threading.Event = field(default_factory=threading.Event)

    def start_readers(self) -> None:
        for target, stream in ((_read_events, "stdout"), (_drain_stderr, "stderr")):
            reader = threading.Thread(
                target=target, args=(self,), name=f"worker-{self.popen.pid}-{stream}", daemon=True
            )
            reader.start()
            self.readers.append(reader)

    def alive(self) -> bool:
        return not self.stdout_closed.is_set() and self.popen.poll() is None

    def kill(self, wait: bool = True) -> None:
        try:
            self.popen.kill()
        except OSError:
            pass  # already gone
        if wait:
            self.popen.wait()

    def release(self) -> None:
        """Close the pipes of a process that has exited, once its readers have seen the end."""
        for reader in self.readers:
            reader.join(timeout=SHUTDOWN_GRACE_SECONDS)
        for pipe in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            try:
                pipe.close()
            except OSError:
                pass

    def exit_description(self) -> str:
        code = self.popen.wait()
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            description = f"worker exited with signal {name}"
            if name == "SIGKILL":
                description += " (out of memory, or killed from outside)"
            return description
        description = f"worker exited with code {code}"
        for reader in self.readers:
            reader.join(timeout=1.0)  # the last stderr lines say why
        last_lines = [line for line in self.stderr_tail if line.strip()]
        return f"{description}: {last_lines[-1]}" if last_lines else description


class WorkerProcess:
    """A long-lived ``engine.worker`` for one device; restarted transparently after it dies.

    ``run`` is meant for one thread at a time (the device's scheduler thread);
    ``cancel`` may be called from any other thread.
    """

    def __init__(
        self,
        device: str,
        *,
        models_dir: str | None = None,
        custom_benchmarks_dir: str | None = None,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        startup_timeout: float = 120,
    ):
        self.device = device
        self._command = [python, "-m", "engine.worker", "--device", device]
        if models_dir:
            self._command += ["--models-dir", str(models_dir)]
        if custom_benchmarks_dir:
            self._command += ["--custom-benchmarks-dir", str(custom_benchmarks_dir)]
        self._env = {**os.environ, **env} if env else None  # extra variables on top of ours
        self._startup_timeout = startup_timeout
        self._process: _Process | None = None
        self._job_ids = itertools.count(1)
        self._run_lock = threading.Lock()  # one request at a time on the protocol
        self._state_lock = threading.Lock()  # guards _process, _in_flight, _cancelled against cancel()
        self._in_flight = False
        self._cancelled = False
        self._closed = False

    # -- lifecycle -----------------------------------------------------------

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.popen.pid if process is not None and process.alive() else None

    def start(self) -> None:
        """Start the worker if it is not running, and wait for its "ready" line."""
        with self._state_lock:
            previous = self._process
        if previous is not None:
            if previous.alive():
                return
            previous.release()
        popen = subprocess.Popen(
            self._command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self._env,
            text=True,
            encoding="utf-8",
            bufsize=1,
            # Its own session: a Ctrl-C meant for the server does not kill a config mid-measurement.
            start_new_session=True,
        )
        process = _Process(popen)
        process.start_readers()
        with self._state_lock:
            if self._closed:  # close() came while this worker was starting
                process.kill()
                raise WorkerStartError(f"worker for {self.device} was closed while it started")
            self._process = process
            if self._cancelled:
                process.kill(wait=False)  # cancel() came while this worker was starting for its job
        deadline = time.monotonic() + self._startup_timeout
        while True:
            event = _next_event(process, deadline)
            if event is None:
                process.kill()
                raise WorkerStartError(
                    f"worker for {self.device} did not start within {self._startup_timeout:g} s"
                )
            if event is _EXITED:
                raise WorkerStartError(
                    f"worker for {self.device} failed to start: {process.exit_description()}"
                )
            if isinstance(event, protocol.Ready):
                process.ready.set()
                return

    def close(self) -> None:
        """Ask the worker to exit; kill it if it does not within a few seconds. Final."""
        with self._state_lock:
            self._closed = True
            process, self._process = self._process, None
        _shut_down(process)

    def recycle(self) -> None:
        """End the worker process, if one runs, so that the next ``run`` starts a fresh one
        (repeats measure a config in several processes)."""
        with self._run_lock:
            with self._state_lock:
                process, self._process = self._process, None
            _shut_down(process)

    def __enter__(self) -> WorkerProcess:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- requests ------------------------------------------------------------

    def run(self, job: Job, timeout_s: float | None = None) -> Measurement:
        """Measure ``job`` in the worker; every failure comes back as a FAILED Measurement."""
        with self._run_lock:
            started = time.perf_counter()
            with self._state_lock:
                self._in_flight, self._cancelled = True, False
            try:
                result = self._start_and_exchange(job, timeout_s)
            finally:
                with self._state_lock:
                    self._in_flight, self._cancelled = False, False
            if result.wall_seconds is None:
                result.wall_seconds = time.perf_counter() - started
            return result

    def ping(self, timeout_s: float = 10.0) -> bool:
        """True when the worker answers; False when it cannot start or stays silent (it is then killed)."""
        return self._ask(protocol.Ping(), protocol.Pong, timeout_s, kill_if_silent=True) is not None

    def free_memory_bytes(self, timeout_s: float = 30.0) -> int | None:
        """The device's free memory as the worker reads it (starting the worker if need be);
        None when it cannot start or does not say."""
        answer = self._ask(protocol.MemoryQuery(), protocol.MemoryInfo, timeout_s)
        return None if answer is None else answer.free_bytes

    def plan_facts(self, query: protocol.PlanQuery, timeout_s: float = 300.0) -> protocol.PlanFacts | None:
        """What planning needs of torch and transformers, as this worker reads them (starting it
        if need be; issue 16); None when it cannot start or does not say."""
        return self._ask(query, protocol.PlanFacts, timeout_s)

    def _ask(self, query, answer_type: type, timeout_s: float, kill_if_silent: bool = False):
        """Send one query between jobs and wait for its answer (starting the worker if need be);
        None when the worker cannot start, is closed, or does not answer in time."""
        with self._run_lock:
            try:
                self.start()
            except WorkerStartError:
                return None
            process = self._process
            if process is None:  # closed meanwhile
                return None
            try:
                _send(process, query)
            except OSError:
                return None
            deadline = time.monotonic() + timeout_s
            while True:
                event = _next_event(process, deadline)
                if event is None or event is _EXITED:
                    if kill_if_silent:
                        process.kill()
                    return None
                if isinstance(event, answer_type):
                    return event

    def cancel(self) -> bool:
        """Kill the job in flight (from any thread); its ``run`` returns FAILED "cancelled" promptly.

        False when no job was in flight.
        """
        with self._state_lock:
            if not self._in_flight:
                return False
            self._cancelled = True
            if self._process is not None:
                self._process.kill(wait=False)
            return True

    def _start_and_exchange(self, job: Job, timeout_s: float | None) -> Measurement:
        try:
            self.start()
        except WorkerStartError as exc:
            if self._was_cancelled():
                return _cancelled(job)
            return Measurement.failure(job.config, FAILED, "worker_start_failed", str(exc))
        return self._exchange(self._process, job, timeout_s)

    def _was_cancelled(self) -> bool:
        with self._state_lock:
            return self._cancelled

    def _exchange(self, process: _Process, job: Job, timeout_s: float | None) -> Measurement:
        job_id = str(next(self._job_ids))
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            _send(process, protocol.RunJob(job_id=job_id, job=job))
        except OSError:
            pass  # the worker is already gone; its exit is read below
        while True:
            event = _next_event(process, deadline)
            if event is None:
                process.kill()
                return Measurement.failure(
                    job.config, FAILED, "timeout", f"config exceeded its {timeout_s:g} s time limit"
                )
            if event is _EXITED:
                if self._was_cancelled():
                    return _cancelled(job)
                return Measurement.failure(job.config, FAILED, "worker_crashed", process.exit_description())
            if getattr(event, "job_id", None) != job_id:
                continue
            if isinstance(event, protocol.JobResult):
                return event.result
            if isinstance(event, protocol.WorkerError):
                return Measurement.failure(job.config, FAILED, "protocol_error", event.message)


def _shut_down(process: _Process | None) -> None:
    """Ask ``process`` to exit; kill it if it does not within a few seconds."""
    if process is None:
        return
    if process.alive() and not process.ready.is_set():
        process.kill()  # still starting (a pre-started worker no run needed): nothing to finish
    elif process.alive():
        try:
            _send(process, {"op": "shutdown"})
            process.popen.wait(timeout=SHUTDOWN_GRACE_SECONDS)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
    process.release()


def _send(process: _Process, message: protocol.WorkerRequest) -> None:
    process.popen.stdin.write(protocol.encode(message).decode() + "\n")
    process.popen.stdin.flush()


def _next_event(process: _Process, deadline: float | None):
    """The next protocol event, ``_EXITED`` when stdout closed, None when ``deadline`` passed."""
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
        return process.events.get(timeout=timeout)
    except queue.Empty:
        return None


def _read_events(process: _Process) -> None:
    for line in process.popen.stdout:
        try:
            event = protocol.event_decoder.decode(line)
        except msgspec.DecodeError:
            log.warning("worker %s wrote a non-protocol line: %r", process.popen.pid, line[:200])
            continue
        process.events.put(event)
    process.stdout_closed.set()
    process.events.put(_EXITED)


def _drain_stderr(process: _Process) -> None:
    for line in process.popen.stderr:
        line = line.rstrip("\n")
        process.stderr_tail.append(line)
        log.debug("worker %s: %s", process.popen.pid, line)


def _cancelled(job: Job) -> Measurement:
    return Measurement.failure(job.config, FAILED, "cancelled", "cancelled while it was running")
