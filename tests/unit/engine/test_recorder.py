"""The recorder runs what it is handed one at a time, in order, and loses none of it."""

from __future__ import annotations

import threading

import pytest

from engine.recorder import Recorder


def test_jobs_run_one_at_a_time_in_the_order_they_were_handed_over():
    recorder, done = Recorder(), []
    gate = threading.Event()
    recorder.submit(gate.wait, 10)
    futures = [recorder.submit(done.append, n) for n in range(50)]
    assert done == []  # held behind the first job
    gate.set()
    recorder.drain()
    assert done == list(range(50)) and all(f.done() for f in futures)
    recorder.close()


def test_what_a_job_hands_over_runs_within_it_so_a_drain_after_it_covers_both():
    recorder, done = Recorder(), []

    def finish_run():
        recorder.submit(done.append, "reports")  # as a run's last result hands over its end
        done.append("result")

    recorder.submit(finish_run)
    recorder.drain()
    assert done == ["reports", "result"]
    recorder.close()


def test_a_failing_job_reaches_its_caller_and_the_next_job_still_runs():
    recorder = Recorder()
    with pytest.raises(OSError, match="disk full"):
        recorder.call(lambda: (_ for _ in ()).throw(OSError("disk full")))
    assert recorder.call(lambda: "still working") == "still working"
    recorder.close()


def test_close_runs_what_is_queued_and_later_jobs_run_at_once():
    recorder, done = Recorder(), []
    gate = threading.Event()
    recorder.submit(gate.wait, 10)
    recorder.submit(done.append, "queued")
    threading.Timer(0.1, gate.set).start()
    recorder.close()
    assert done == ["queued"]
    assert recorder.submit(done.append, "after close").done() and done == ["queued", "after close"]
