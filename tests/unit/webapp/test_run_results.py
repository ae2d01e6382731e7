from datetime import datetime, timezone

from descriptions import stored_run
from engine.runs import RunRequest
from storage import runs as run_rows
from webapp.wiring.services import Services
from webapp.wiring.settings import Settings


def test_a_stored_runs_results_read_its_row_once(tmp_path, monkeypatch):
    settings = Settings(db_path=str(tmp_path / "b.duckdb"), results_dir=str(tmp_path / "results"),
                        log_dir=str(tmp_path / "logs"), prestart_workers=False, resume=False)
    services = Services(settings)
    try:
        started, ended = (datetime(2024, 5, 1, 12, minute, tzinfo=timezone.utc) for minute in (0, 5))
        request = RunRequest(models=["bert-tiny"], batch_sizes=[1])
        run_rows.save_run(services.db, stored_run("r1", request=request, start_time=started, completion_time=ended))
        reads = []
        get_run = run_rows.get_run

        def counted_get_run(db, run_id, as_type):
            reads.append(run_id)
            return get_run(db, run_id, as_type)

        monkeypatch.setattr(run_rows, "get_run", counted_get_run)
        results = services.run_results("r1")

        assert reads == ["r1"]
        # Its status comes from that one row: the scheduler of this process never held the run.
        assert (results.status, results.start_time, results.completion_time) == ("completed", started, ended)
        assert results.config == request and results.results == results.failures == results.reused == []
    finally:
        services.close()
