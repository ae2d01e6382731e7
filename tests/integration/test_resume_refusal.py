"""A run that was active when the server stopped, but can no longer be planned (its model
is gone), is not resumed: it is marked failed, saying why, and the server starts anyway."""

from __future__ import annotations

import msgspec

from descriptions import stored_run
from engine.runs import RunRecord, RunRequest
from storage.database import Database
from storage.runs import get_run, save_run
from webapp.wiring.services import Services
from webapp.wiring.settings import Settings


def test_a_run_that_cannot_be_planned_again_is_failed_with_the_reason(tmp_path):
    settings = Settings(db_path=str(tmp_path / "b.duckdb"), results_dir=str(tmp_path / "results"),
                        log_dir=str(tmp_path / "logs"), prestart_workers=False)
    with Database(settings.db_path) as db:
        save_run(db, stored_run("gone", "running", total_configs=2, completed_configs=1,
                                current_step="gone-model on cpu", request=RunRequest(models=["gone-model"])))
    services = Services(settings)
    try:
        assert services.resume_interrupted_runs() == []
        run = get_run(services.db, "gone", RunRecord)
        assert run.status == "failed" and run.current_step is None and run.completion_time is not None
        assert run.error.startswith("could not resume after restart: models: unknown model 'gone-model'")
        assert services.scheduler.get("gone") is None
    finally:
        services.close()


def test_a_run_whose_request_was_not_stored_is_failed_saying_so(tmp_path):
    settings = Settings(db_path=str(tmp_path / "b.duckdb"), results_dir=str(tmp_path / "results"),
                        log_dir=str(tmp_path / "logs"), prestart_workers=False)
    with Database(settings.db_path) as db:
        # As another writer stores it: no request (storage.runs reads it back as None).
        save_run(db, msgspec.structs.replace(stored_run("bare", "running", total_configs=2), request=None))
    services = Services(settings)
    try:
        assert services.resume_interrupted_runs() == []
        run = get_run(services.db, "bare", RunRecord)
        assert run.status == "failed" and run.request is None
        assert run.error == (
            "could not resume after restart: request: the run's request was not stored, so its configs are unknown"
        )
    finally:
        services.close()
