"""The dashboard in headless Chromium: live runs, charts, the comparison table, exports and SQL.

Every test fails if the page logged a JS error (see the ``page`` fixture).
"""

from __future__ import annotations

import csv
import io
import re

import httpx
import pytest
from browser_helpers import LAPTOP, PHONE, RUN_TIMEOUT_S, TINY_MODELS, screenshot, wait_for_run

from storage.database import Database

pytestmark = pytest.mark.browser

PAGES = {"overview": "/", "comparison": "/comparison", "runs": "/runs", "reports": "/reports", "sql": "/sql"}


def rendered_chart(page, chart_id: str):
    """The chart's drawing, once vega-embed has put an svg (or canvas) in it."""
    # The wait names data-rendered='true' itself: the marks can exist a moment before app.js
    # marks the embed done (a race when the wait was for the marks and the flag read after).
    page.locator(f"#{chart_id}[data-rendered='true'] :is(svg.marks, canvas.marks)").first.wait_for()
    return page.locator(f"#{chart_id}")


def column_values(page, column: str) -> list[str]:
    index = page.locator("#results-table thead th").evaluate_all(
        f"cells => cells.findIndex(cell => cell.dataset.column === {column!r})"
    )
    return page.locator(f"#results-table tbody tr td:nth-child({index + 1})").all_inner_texts()


def choose_models(page, models):
    for model in models:
        page.check(f'input[name="models"][value="{model}"]')


def test_a_run_started_from_the_form_reaches_100_percent_with_rows_appearing_live(page):
    page.goto("/runs")
    choose_models(page, TINY_MODELS)
    page.fill("#run-batch-sizes", "1, 2")
    page.uncheck("#run-progressive")
    page.uncheck("#run-incremental")
    page.click("#run-submit")
    page.wait_for_url(re.compile(r"/runs/[0-9a-f]+$"))
    # A marker that a reload or navigation would wipe: the updates must arrive in this document.
    page.evaluate("window.sameDocument = true")
    expected_rows = len(TINY_MODELS) * 2

    page.locator("#run-results-body tr.run-row").first.wait_for(timeout=RUN_TIMEOUT_S * 1000)
    screenshot(page, "run-in-progress")
    page.locator('#run-progress[data-status="completed"]').wait_for(timeout=RUN_TIMEOUT_S * 1000)

    assert page.evaluate("window.sameDocument") is True
    assert page.locator("#run-progress").get_attribute("aria-valuenow") == "100"
    assert page.locator("#run-progress-label").inner_text() == "100%"
    page.locator("#run-results-body tr.run-row").nth(expected_rows - 1).wait_for()
    rows = page.locator("#run-results-body tr.run-row")
    assert rows.count() == expected_rows
    assert set(rows.evaluate_all("rows => rows.map(row => row.dataset.outcome)")) == {"ok"}
    assert page.locator("#cancel-form").count() == 0
    assert page.locator("#run-results-empty").is_hidden()
    screenshot(page, "run-finished")


def test_the_cancel_button_stops_a_running_run(page, server):
    reply = httpx.post(
        f"{server.url}/api/benchmark/run",
        json={
            "models": ["bert-tiny"],
            "batch_sizes": [1, 2, 4, 8, 16, 32],
            "progressive_mode": False,
            "incremental": False,
        },
        timeout=30,
    )
    run_id = reply.json()["run_id"]
    page.goto(f"/runs/{run_id}")
    # The button asks first: dismissed, nothing happens.
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click("#cancel-button")
    page.wait_for_timeout(500)
    assert asked and run_id in asked[0]
    status = httpx.get(f"{server.url}/api/benchmark/status/{run_id}", timeout=30).json()["status"]
    assert status in ("queued", "running")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-button")
    page.locator('#run-progress[data-status="cancelled"]').wait_for()
    assert page.locator("#cancel-form").count() == 0
    assert httpx.get(f"{server.url}/api/benchmark/status/{run_id}", timeout=30).json()["status"] == "cancelled"


def test_the_overview_draws_its_charts_and_filters_them_without_a_reload(page, measured):
    page.goto("/")
    rendered_chart(page, "chart-hardware")
    rendered_chart(page, "chart-scaling")
    assert page.locator("#top-models table tbody tr").count() >= 1
    page.evaluate("window.sameDocument = true")

    page.select_option("#filter-metric", "latency_p50")
    page.wait_for_url(re.compile(r"metric=latency_p50"))
    page.locator("#chart-hardware[data-rendered='true'] svg.marks").wait_for()
    assert "Latency p50 (ms)" in page.locator("#chart-hardware svg.marks").text_content()
    assert "Latency p50 (ms) by hardware" in page.locator("#chart-hardware-title").inner_text()
    assert page.evaluate("window.sameDocument") is True


def test_the_comparison_heatmap_renders(page, measured):
    page.goto("/comparison")
    rendered_chart(page, "chart-heatmap")
    assert "by model family and hardware" in page.locator("#chart-heatmap-title").inner_text()


def test_the_comparison_table_sorts_and_filters_on_the_server(page, measured):
    page.goto("/comparison")
    page.click("#sort-p50_latency_ms")
    page.locator('th[data-column="p50_latency_ms"][aria-sort="ascending"]').wait_for()
    ascending = [float(value.replace(",", "")) for value in column_values(page, "p50_latency_ms")]
    assert len(ascending) >= 4 and ascending == sorted(ascending)
    assert "sort=p50_latency_ms" in page.url

    page.click("#sort-p50_latency_ms")
    page.locator('th[data-column="p50_latency_ms"][aria-sort="descending"]').wait_for()
    descending = [float(value.replace(",", "")) for value in column_values(page, "p50_latency_ms")]
    assert descending == sorted(ascending, reverse=True)

    page.select_option("#filter-family", "gpt2")
    page.wait_for_url(re.compile(r"family=gpt2"))
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results-table tbody tr td:first-child')]"
        ".every(cell => cell.textContent.trim() === 'gpt2-tiny')"
    )
    assert set(column_values(page, "model_name")) == {"gpt2-tiny"}
    # The filter kept the sort the user chose.
    assert page.locator('th[data-column="p50_latency_ms"][aria-sort="descending"]').count() == 1
    screenshot(page, "comparison-filtered")


def test_the_csv_download_holds_the_rows_duckdb_has(page, measured, db_path):
    page.goto("/comparison?family=bert&runs=all")  # every run's rows, as DuckDB holds them
    with page.expect_download() as download:
        page.click("#export-csv")
    downloaded = list(csv.DictReader(io.StringIO(download.value.path().read_text())))

    measured.stop()  # the server holds the DuckDB file; read it directly once it has let go
    try:
        with Database(db_path) as db:
            stored = (
                db.cursor()
                .execute(
                    "SELECT result_id, model_name, batch_size, p50_latency_ms, throughput_items_per_second "
                    "FROM results_view WHERE model_family = 'bert' ORDER BY result_id"
                )
                .fetchall()
            )
    finally:
        measured.start()
    assert stored, "the run measured no bert model"
    assert (
        sorted(
            (
                int(row["result_id"]),
                row["model_name"],
                int(row["batch_size"]),
                float(row["p50_latency_ms"]),
                float(row["throughput_items_per_second"]),
            )
            for row in downloaded
        )
        == stored
    )


def test_a_sql_query_shows_its_rows_and_a_chart(page, measured):
    page.goto("/sql")
    assert "AVG(pr.throughput_items_per_second)" in page.input_value("#sql-input")
    page.click("#sql-run")
    page.locator("#sql-table tbody tr").first.wait_for()
    assert page.locator("#sql-table thead th").all_text_contents() == [
        "model_family",
        "hardware_type",
        "avg_throughput",
    ]
    rendered_chart(page, "chart-sql")
    screenshot(page, "sql-result")


def test_the_sql_guard_refusal_is_shown_inline(page, measured):
    page.goto("/sql")
    page.fill("#sql-input", "DROP TABLE models")
    page.click("#sql-run")
    refusal = page.locator("#sql-refusal")
    refusal.wait_for()
    assert refusal.inner_text().startswith("Refused:")
    assert page.locator("#sql-table").count() == 0


@pytest.mark.parametrize(("width_name", "viewport"), [("laptop", LAPTOP), ("phone", PHONE)])
def test_every_page_renders_without_errors_and_is_screenshotted(page, measured, width_name, viewport):
    page.set_viewport_size(viewport)
    finished = httpx.get(f"{measured.url}/api/benchmark/runs", params={"status": "completed", "limit": 1},
                         timeout=30).json()
    for name, url in [*PAGES.items(), ("run", f"/runs/{finished[0]['run_id']}")]:
        page.goto(url)
        page.wait_for_load_state("load")
        for chart in page.locator("[data-vega-spec]").all():
            chart.locator("svg.marks, canvas.marks").first.wait_for()
        # Nothing wider than the window: the layout reflows; wide tables scroll in their own region.
        widths = page.evaluate("[document.body.scrollWidth, document.body.clientWidth]")
        assert widths[0] <= widths[1], f"{url} is {widths[0]}px wide in a {widths[1]}px {width_name} window"
        screenshot(page, f"{name}-{width_name}")


def run_ids(server) -> set[str]:
    runs = httpx.get(f"{server.url}/api/benchmark/runs", params={"limit": 1000}, timeout=30).json()
    return {run["run_id"] for run in runs}


def test_a_double_click_on_start_run_starts_one_run(page, server):
    before = run_ids(server)
    page.goto("/runs")
    choose_models(page, ["bert-tiny"])
    page.fill("#run-batch-sizes", "1")
    page.uncheck("#run-progressive")
    page.uncheck("#run-incremental")
    page.dblclick("#run-submit")
    page.wait_for_url(re.compile(r"/runs/[0-9a-f]+$"))
    run_id = page.url.rsplit("/", 1)[1]
    page.wait_for_timeout(1000)  # room for the second start a second click would have sent
    assert run_ids(server) - before == {run_id}
    assert wait_for_run(server, run_id)["status"] == "completed"


def test_the_runs_list_turns_completed_without_a_reload(page, server):
    page.goto("/runs")
    page.evaluate("window.sameDocument = true")
    reply = httpx.post(
        f"{server.url}/api/benchmark/run",
        json={"models": ["bert-tiny"], "batch_sizes": [1], "progressive_mode": False, "incremental": False}, timeout=30,
    )
    assert reply.status_code == 202, reply.text
    run_id = reply.json()["run_id"]
    # The row arrives over the runs channel (SSE), then turns completed, in the same document.
    page.locator(f"#run-row-{run_id}").wait_for(timeout=RUN_TIMEOUT_S * 1000)
    page.locator(f'#run-row-{run_id}[data-status="completed"]').wait_for(timeout=RUN_TIMEOUT_S * 1000)
    assert page.evaluate("window.sameDocument") is True
    row = page.locator(f"#run-row-{run_id}").inner_text()
    assert "fp32" in row and "128" in row and "1/1 (100%)" in row


def test_a_rerun_lists_the_configs_it_reused_and_the_runs_they_came_from(page, measured):
    reply = httpx.post(
        f"{measured.url}/api/benchmark/run",
        json={"models": TINY_MODELS, "batch_sizes": [1, 2], "progressive_mode": False}, timeout=30,
    )
    run_id = reply.json()["run_id"]
    assert wait_for_run(measured, run_id)["status"] == "completed"
    page.goto(f"/runs/{run_id}")
    reused = page.locator('#run-results-body tr[data-outcome="reused"]')
    assert reused.count() == len(TINY_MODELS) * 2
    for row in reused.all():
        source = row.locator('a[href^="/runs/"]').get_attribute("href")
        assert source != f"/runs/{run_id}" and "from run" in row.inner_text()
    assert page.locator("#run-skipped").inner_text().startswith("4 of 4 configs were not measured again")
    assert page.locator("#run-results-empty").count() == 0
