"""A Ctrl-C that lands inside the import machinery is delivered once the main thread is out of it
(webapp.cli.interrupts): raised there, it could leave a module's lock held for good."""

from __future__ import annotations

import signal
import sys
import time

import pytest

from webapp.cli import interrupts


class CtrlCInsideImportlib:
    """A finder: importlib calls it from its own frames, where the Ctrl-C is made to land."""

    def __init__(self):
        self.put_off = None

    def find_spec(self, name, path, target=None):
        if name == "benchboard_no_such_module":
            try:
                interrupts.on_ctrl_c(signal.SIGINT, sys._getframe(1))  # importlib's frame
                self.put_off = True
            except KeyboardInterrupt:
                self.put_off = False
        return None


@pytest.fixture
def installed():
    previous = signal.signal(signal.SIGINT, interrupts.on_ctrl_c)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_inside_the_import_machinery_is_delivered_once_out_of_it(installed):
    finder = CtrlCInsideImportlib()
    sys.meta_path.insert(0, finder)
    try:
        with pytest.raises(ModuleNotFoundError):
            import benchboard_no_such_module  # noqa: F401  (pyflakes: the import is the point)
    finally:
        sys.meta_path.remove(finder)
    assert finder.put_off is True
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        time.sleep(5)
    assert time.monotonic() - started < 1  # delivered again at once, not lost


def test_a_ctrl_c_anywhere_else_interrupts_at_once(installed):
    with pytest.raises(KeyboardInterrupt):
        interrupts.on_ctrl_c(signal.SIGINT, sys._getframe())


def test_a_ctrl_c_while_a_module_body_runs_waits_for_the_import_to_end(installed, tmp_path, monkeypatch):
    # A class body's __set_name__ (dataclasses' Field) turns a KeyboardInterrupt into a RuntimeError.
    (tmp_path / "benchboard_slow_module.py").write_text(
        "import signal, sys\n"
        "from webapp.cli import interrupts\n"
        "try:\n"
        "    interrupts.on_ctrl_c(signal.SIGINT, sys._getframe())\n"
        "    PUT_OFF = True\n"
        "except KeyboardInterrupt:\n"
        "    PUT_OFF = False\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import benchboard_slow_module

    assert benchboard_slow_module.PUT_OFF is True
    with pytest.raises(KeyboardInterrupt):
        time.sleep(5)


def test_sigterm_while_a_run_measures_cancels_it_once_and_a_second_sigterm_is_left_to_kill():
    cancels = []
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with interrupts.cancelling_on_signals(lambda: cancels.append("cancel")) as received:
        signal.raise_signal(signal.SIGTERM)
        assert cancels == ["cancel"] and received == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the next one ends the process
        signal.raise_signal(signal.SIGINT)
        assert cancels == ["cancel", "cancel"] and received == [signal.SIGTERM, signal.SIGINT]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_sigterm_handler_someone_else_set_is_left_in_place():
    def theirs(signum, frame):
        theirs.called = True

    previous = signal.signal(signal.SIGTERM, theirs)
    try:
        with interrupts.cancelling_on_signals(lambda: pytest.fail("cancelled on their SIGTERM")) as received:
            signal.raise_signal(signal.SIGTERM)
        assert theirs.called and received == []
        assert signal.getsignal(signal.SIGTERM) is theirs
    finally:
        signal.signal(signal.SIGTERM, previous)
