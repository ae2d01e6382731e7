"""The event fan-out every listener hangs on, and the settings a server keeps across restarts."""

from __future__ import annotations

import logging
import stat

import pytest

from engine.config import BenchmarkConfig
from engine.result import Measurement
from webapp.wiring.events import EventFanout
from webapp.wiring.settings import Settings

CONFIG = BenchmarkConfig(model_name="bert-tiny", hardware="cpu", batch_size=1)


class Recorder:
    def __init__(self, log: list):
        self.log = log

    def run_updated(self, run_id, status):
        self.log.append(("updated", run_id, status))

    def result_recorded(self, run_id, result):
        self.log.append(("result", run_id, result.batch_size))

    def run_finished(self, run_id, status):
        self.log.append(("finished", run_id, status))


class Broken(Recorder):
    def run_updated(self, run_id, status):
        raise RuntimeError("listener down")

    result_recorded = run_finished = run_updated


def test_every_listener_hears_every_event_in_order(caplog):
    first, second = [], []
    fanout = EventFanout([Recorder(first), Broken([]), Recorder(second)])
    with caplog.at_level(logging.ERROR):
        fanout.run_updated("r1", "s1")
        fanout.result_recorded("r1", Measurement.of(CONFIG))
        fanout.run_finished("r1", "s2")
    expected = [("updated", "r1", "s1"), ("result", "r1", 1), ("finished", "r1", "s2")]
    assert first == expected and second == expected  # the broken listener stopped no one
    failures = [record for record in caplog.records if record.exc_info and "listener down" in str(record.exc_info[1])]
    assert [record.getMessage().split(" failed on ")[1] for record in failures] == [
        "run_updated of run r1", "result_recorded of run r1", "run_finished of run r1"
    ]  # and each of its failures was logged, with what it failed on


def test_the_csrf_secret_outlives_a_restart_and_only_its_owner_reads_it(tmp_path):
    first = Settings(results_dir=str(tmp_path / "results")).csrf_secret()
    again = Settings(results_dir=str(tmp_path / "results")).csrf_secret()
    assert first == again and len(first) >= 32
    secret_file = tmp_path / "results" / ".csrf-secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert Settings(results_dir=str(tmp_path / "results"), secret_key="configured").csrf_secret() == "configured"


def test_environment_variables_configure_the_server_and_flags_win():
    environ = {"BENCHBOARD_PORT": "9001", "BENCHBOARD_CORS_ORIGINS": "app://a, http://b", "BENCHBOARD_RESUME": "no",
               "BENCHBOARD_MAX_SECONDS": "2.5"}
    settings = Settings.from_env(environ, port=9002)
    assert settings.port == 9002
    assert settings.cors_origins == ["app://a", "http://b"]
    assert settings.resume is False and settings.max_seconds == 2.5


def test_the_sql_pool_size_and_duckdb_threads_come_from_the_environment():
    settings = Settings.from_env({"BENCHBOARD_SQL_POOL_SIZE": "1", "BENCHBOARD_DB_THREADS": "1"})
    assert settings.sql_pool_size == 1 and settings.db_threads == 1
    assert Settings.from_env({}).sql_pool_size == 2 and Settings.from_env({}).db_threads == 1


def test_out_of_range_settings_are_refused_naming_the_variable_or_the_field():
    from webapp.wiring.settings import SettingsError

    refused = {
        "BENCHBOARD_PORT": ("70000", "must be between 0 and 65535, not 70000"),
        "BENCHBOARD_MAX_SECONDS": ("nan", "must be a number above 0 seconds, not nan"),
        "BENCHBOARD_MAX_CONFIGS_PER_RUN": ("0", "must be at least 1, not 0"),
        "BENCHBOARD_SQL_ROW_CAP": ("lots", "must be a whole number, not 'lots'"),
    }
    for variable, (raw, reason) in refused.items():
        with pytest.raises(SettingsError) as error:
            Settings.from_env({variable: raw})
        assert str(error.value) == f"{variable}={raw!r}: {reason}"
    # A flag that overrides a bad variable wins; a bad value from Python names the field.
    assert Settings.from_env({"BENCHBOARD_PORT": "70000"}, port=8001).port == 8001
    for values, message in (({"max_seconds": -1.0}, "max_seconds must be a number above 0 seconds, not -1"),
                            ({"threads": 0}, "threads must be at least 1, not 0")):
        with pytest.raises(SettingsError, match=message):
            Settings(**values)


def test_a_results_folder_that_cannot_hold_the_csrf_secret_gets_one_for_the_process(tmp_path, caplog):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the folder should be")
    settings = Settings(results_dir=str(blocker))
    with caplog.at_level(logging.WARNING):
        secret = settings.csrf_secret()
    assert len(secret) >= 32 and settings.csrf_secret() == secret  # the same for the process's life
    assert "cannot keep the CSRF secret" in caplog.text
