import json
import re
from datetime import datetime

import duckdb
import msgspec
import pytest

from descriptions import CPU, model_description
from engine.config import BenchmarkConfig
from engine.result import FAILED, Measurement
from engine.runs import RunRecord, RunRequest, RunState, expand
from storage.database import Database
from storage.results import insert_results, record_failure
from storage.runs import get_run, save_run
from webapp.reporting.reports import (
    ReportNotFound, ReportWriteFailed, ReportWriter, list_reports, report_file, write_reports,
)

HOSTILE = "<script>alert(1)</script>"
MODEL = model_description(HOSTILE, "bert", parameters_million=0.4, source="custom")


def stored(measurement, key, **extra):
    return {**msgspec.structs.asdict(measurement), "run_id": "r1", "config_key": key, "model": MODEL,
            "hardware": CPU, **extra}


def config(batch_size):
    return BenchmarkConfig(model_name=HOSTILE, hardware=CPU.name, batch_size=batch_size)


def completed_run() -> RunState:
    request = RunRequest(models=[HOSTILE], batch_sizes=[4, 64])
    run = RunState(request=request, configs=expand(request, [HOSTILE], [CPU.name]), run_id="r1")
    run.status, run.started_at, run.completed_at = "completed", datetime.now(), datetime.now()
    run.finished_keys = {c.key() for c in run.configs}
    return run


@pytest.fixture
def finished_run(tmp_path):
    db = Database(tmp_path / "b.duckdb")
    save_run(db, completed_run().record())
    measured = Measurement.of(
        config(4), n_samples=30, p50_latency_ms=2.0, p90_latency_ms=None, p99_latency_ms=3.0,
        throughput_items_per_second=2000.0, ci_met=True, samples_ms=[2.0] * 29 + [3.0],
    )
    insert_results(db, [stored(measured, "k1")])
    oom = Measurement.failure(config(64), FAILED, "oom", "out of memory")
    record_failure(db, stored(oom, "k2", is_compatible=False))
    return db, tmp_path / "results"


def test_reports_hold_the_results_and_failures_of_the_run(finished_run):
    db, results_dir = finished_run
    folder = write_reports(db, results_dir, "r1")
    data = json.loads((folder / "results.json").read_text())
    assert data["run"]["status"] == "completed"
    assert [(r["batch_size"], r["p50_latency_ms"]) for r in data["results"]] == [(4, 2.0)]
    assert data["results"][0]["samples_ms"] == [2.0] * 29 + [3.0]  # the raw times, to reproduce the figures
    assert data["failures"][0]["error_message"] == "out of memory"
    markdown = (folder / "report.md").read_text()
    assert "| 4 | fp32 | 128 | 2.000 | - | - | 3.000 | 2000.0 | - | 30 | OK |" in markdown
    assert "oom: out of memory" in markdown


def test_html_report_is_self_contained_and_escapes_model_names(finished_run):
    db, results_dir = finished_run
    html = (write_reports(db, results_dir, "r1") / "report.html").read_text()
    assert HOSTILE not in html.split('<script type="application/json"')[0].split("<body>")[1]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "vegaEmbed(" in html and "<\\/script>" in html  # chart data cannot close its <script>


def test_listing_and_lookup_only_know_report_files(finished_run):
    db, results_dir = finished_run
    write_reports(db, results_dir, "r1")
    (entry,) = list_reports(db, results_dir)
    assert (entry.run_id, entry.status) == ("r1", "completed")
    assert entry.reports == ["report.html", "report.md", "results.json"]
    assert report_file(results_dir, "r1", "report.md").name == "report.md"
    for run_id, name in [("r1", "../b.duckdb"), ("..", "report.md"), ("r1", "/etc/passwd"), ("nope", "report.md")]:
        with pytest.raises(ReportNotFound):
            report_file(results_dir, run_id, name)


def test_reports_for_an_unknown_run_are_refused(finished_run):
    db, results_dir = finished_run
    with pytest.raises(ReportNotFound):
        write_reports(db, results_dir, "missing")


def test_the_report_writer_writes_once_the_run_has_finished(finished_run):
    db, results_dir = finished_run
    writer = ReportWriter(db, results_dir)
    status = completed_run().status_now()
    writer.run_updated("r1", status)
    assert not (results_dir / "r1").exists()
    writer.run_finished("r1", status)
    assert sorted(path.name for path in (results_dir / "r1").iterdir()) == ["report.html", "report.md", "results.json"]


def test_a_storage_failure_looking_up_what_the_run_reused_is_recorded_as_its_report_error(finished_run):
    db, results_dir = finished_run

    def reused_of(run_id):  # stands in for a storage failure while reading the reused results
        raise duckdb.IOException("could not read the results")

    writer = ReportWriter(db, results_dir, reused_of=reused_of)
    writer.run_finished("r1", completed_run().status_now())  # logged, not raised: the run stays completed

    record = get_run(db, "r1", RunRecord)
    assert record.status == "completed"
    assert record.report_error == "IOException: could not read the results"
    assert list_reports(db, results_dir) == []  # nothing half-written
    with pytest.raises(ReportWriteFailed, match="IOException: could not read the results"):
        writer.rebuild("r1")  # POST .../regenerate answers it as a 503 with that reason
