"""How far each number can be trusted, in headless Chromium (issue 14).

One server for the module, on a database seeded before it starts (tests/browser/seeded.py):
results at fp32 and int8, one of them noisy, one with 200 raw samples. No run is measured
here; the live runs are in test_dashboard_in_browser.py.

Every test fails if the page logged a JS error (the ``open_page`` fixture).
"""

from __future__ import annotations

import math
import re
from urllib.parse import quote

import httpx
import pytest
from browser_helpers import PHONE, assert_fits_a_phone_and_is_accessible, screenshot, warnings_while_charts_draw
from seeded import FINGERPRINT, NOISY, SAMPLE_COUNT, SAMPLED, samples

pytestmark = pytest.mark.browser

HISTOGRAM_BINS = 30  # webapp.pages.results.HISTOGRAM_BINS
SQL = "SELECT model_name, precision, avg(p50_latency_ms) AS p50_ms FROM results_view GROUP BY ALL ORDER BY 1, 2"


def result_of(server, model: str, batch_size: int, precision: str) -> dict:
    rows = httpx.get(f"{server.url}/api/benchmark/query",
                     params={"model": model, "batch_size": batch_size, "precision": precision}, timeout=30).json()
    assert len(rows) == 1, rows
    return rows[0]


@pytest.fixture(scope="module")
def sampled(seeded_server) -> dict:
    return result_of(seeded_server, *SAMPLED)


def drawn(page, chart_id: str):
    """The chart, once vega-embed has drawn it."""
    chart = page.locator(f"#{chart_id}")
    chart.locator("svg.marks").first.wait_for()
    page.wait_for_function(f"document.getElementById({chart_id!r}).dataset.rendered === 'true'")
    return chart


def view_rows(page, chart_id: str) -> list[dict]:
    """The rows the drawn Vega view holds (its named dataset), as the browser has them."""
    return page.evaluate(
        f"document.getElementById({chart_id!r}).vegaView.data('rows').map(row => Object.assign({{}}, row))"
    )


def test_a_chart_over_mixed_precisions_draws_a_separate_line_per_precision(open_page, seeded_server):
    page = open_page(seeded_server)
    page.goto("/")
    chart = drawn(page, "chart-scaling")
    series = {row["series"] for row in view_rows(page, "chart-scaling")}
    assert series == {"bert-tiny · fp32 · seq 128", "bert-tiny · int8 · seq 128", "gpt2-tiny · fp32 · seq 128"}
    # One line per series: never one line from fp32 into int8.
    assert chart.locator("g.mark-line path").count() == len(series)
    legend = chart.locator("g.role-legend-label text").all_text_contents()
    assert {"bert-tiny · fp32 · seq 128", "bert-tiny · int8 · seq 128"} <= set(legend)
    # The noisy point (int8 at batch 4) is hollow; error bars come from the CI.
    assert chart.locator('g.mark-symbol path[fill="white"]').count() == 1
    assert chart.locator('g.mark-symbol path[fill="white"]').get_attribute("stroke") not in (None, "none", "white")
    assert chart.locator("g.mark-rule path, g.mark-rule line").count() >= len(view_rows(page, "chart-scaling"))

    hardware = drawn(page, "chart-hardware")
    bars = view_rows(page, "chart-hardware")
    assert {row["series"] for row in bars} == {"fp32 · seq 128", "int8 · seq 128"}
    assert all(row["n"] == 1 for row in bars)  # the latest result per config
    assert hardware.locator("g.mark-rect path").count() == len(bars)
    screenshot(page, "overview-mixed-precisions")


def test_a_noisy_result_shows_the_noisy_badge_not_ok(open_page, seeded_server):
    noisy = result_of(seeded_server, *NOISY)
    page = open_page(seeded_server)
    page.goto("/comparison")
    row = page.locator(f'#results-table tr[data-result-id="{noisy["result_id"]}"]')
    trust = row.locator("[data-trust]")
    assert trust.inner_text().strip().lower() == "noisy"
    assert "ok" not in [text.strip().lower() for text in row.locator("td").all_inner_texts()]
    steady = page.locator('#results-table tbody tr[data-noisy="false"] [data-trust]')
    assert steady.count() >= 1 and {text.strip() for text in steady.all_inner_texts()} == {"OK"}
    # The badge leads to the result, which says why and offers to measure it again.
    trust.click()
    page.wait_for_url(re.compile(rf"/results/{noisy['result_id']}$"))
    assert "never tightened" in page.locator("#noisy-explanation").inner_text()
    assert page.locator("h1 [data-trust]").inner_text().strip().lower() == "noisy"
    assert page.locator("#measure-again").is_visible()


def expected_histogram(values: list[float], bins: int) -> list[int]:
    low, high = min(values), max(values)
    width = (high - low) / bins
    counts = [0] * bins
    for value in values:
        counts[min(math.floor((value - low) / width), bins - 1)] += 1
    return counts


def test_the_result_page_draws_its_histogram_from_the_stored_samples(open_page, seeded_server, sampled):
    page = open_page(seeded_server)
    page.goto(f"/results/{sampled['result_id']}")
    histogram = drawn(page, "chart-histogram")
    # The samples the server stores, through the page's own JSON link.
    stored = page.request.get(page.locator("#samples-json").get_attribute("href")).json()["samples_ms"]
    assert stored == samples() and len(stored) == SAMPLE_COUNT
    bins = view_rows(page, "chart-histogram")
    assert [row["count"] for row in bins] == expected_histogram(stored, HISTOGRAM_BINS)
    assert (bins[0]["bin_start"], bins[-1]["bin_end"]) == (min(stored), max(stored))
    assert histogram.locator("g.mark-rect path").count() >= HISTOGRAM_BINS  # a bar per bin (and the CI band)

    # In iteration order: the warm-up drift is there, sample by sample.
    drawn(page, "chart-trace")
    trace = view_rows(page, "chart-trace")
    assert [row["latency_ms"] for row in trace] == stored
    assert trace[0]["latency_ms"] > 3.5 > 2.1 > trace[-1]["latency_ms"]

    statistics = dict(zip(page.locator("#statistics-table th").all_inner_texts(),
                          page.locator("#statistics-table td").all_inner_texts(), strict=True))
    assert statistics["Timed iterations (n)"] == str(SAMPLE_COUNT)
    for label in ("Median, p50 (ms)", "Median's 95% CI, low (ms)", "p99 (ms)", "Load time (ms)",
                  "Cold first iteration (ms)", "Throughput (items/s)"):
        assert label in statistics
    assert page.locator("#result-fingerprint").inner_text() == FINGERPRINT
    assert "Seeded Test CPU" in page.locator('#environment-table [data-environment="cpu_model"]').inner_text()
    page.locator("#result-samples summary").click()
    assert page.locator("#samples-list li").count() == SAMPLE_COUNT
    screenshot(page, "result-page")


def test_sql_from_the_url_runs_on_load_and_the_form_keeps_the_query_in_the_url(open_page, seeded_server):
    page = open_page(seeded_server)
    page.goto("/sql?q=" + quote(SQL))
    assert page.locator("#sql-table tbody tr").count() == 3  # rendered with the page: no click
    assert page.input_value("#sql-input") == SQL
    drawn(page, "chart-sql")
    assert "p50_ms" in page.locator("#chart-sql-title").inner_text()
    cells = page.locator("#sql-table tbody tr").first.locator("td").all_inner_texts()
    assert re.fullmatch(r"\d+(\.\d+)?", cells[2])  # formatted: no 3195.082319813881

    page.evaluate("window.sameDocument = true")
    page.fill("#sql-input", "SELECT precision, count(*) AS results FROM results_view GROUP BY 1 ORDER BY 1")
    page.press("#sql-input", "Control+Enter")
    page.wait_for_url(re.compile(r"[?&]q=SELECT"))
    page.locator("#sql-table thead th", has_text="results").wait_for()
    assert page.locator("#sql-table tbody tr").all_inner_texts() == ["fp32\t6", "int8\t3"]
    assert page.evaluate("window.sameDocument") is True
    page.reload()  # a shared link shows the same result
    assert page.locator("#sql-table tbody tr").count() == 2


def test_filter_dropdowns_ask_the_server_once_the_keyboard_settles(open_page, seeded_server):
    page = open_page(seeded_server)
    page.goto("/comparison")
    asked = []
    page.on("request", lambda request: "/comparison?" in request.url and asked.append(request.url))
    page.focus("#filter-precision")
    for _ in range(2):
        page.keyboard.press("ArrowDown")
    page.wait_for_url(re.compile(r"precision=int8"))
    page.wait_for_timeout(1200)  # room for any request a second key press would have sent
    assert len(asked) == 1, asked
    assert page.locator("#results-count").inner_text().startswith("· 3 rows")


def test_keyboard_users_skip_the_navigation_and_reach_scrolling_tables(open_page, seeded_server):
    page = open_page(seeded_server, PHONE)
    page.goto("/comparison")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    region = page.locator("#results-table-section .table-wrap")
    assert (region.get_attribute("role"), region.get_attribute("tabindex")) == ("region", "0")
    assert page.evaluate("el => el.scrollWidth > el.clientWidth", region.element_handle())  # it does scroll
    region.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("End")
    page.wait_for_function("el => el.scrollLeft > 0", arg=region.element_handle())


def test_run_form_errors_are_announced_and_take_the_focus(open_page, seeded_server):
    page = open_page(seeded_server)
    page.goto("/runs")
    page.fill("#run-batch-sizes", "1, x")
    page.click("#run-submit")
    page.locator("#run-form-errors").wait_for()
    page.wait_for_function("document.activeElement && document.activeElement.id === 'run-batch-sizes'")
    field = page.locator("#run-batch-sizes")
    assert field.get_attribute("aria-invalid") == "true"
    assert "error-batch_sizes" in field.get_attribute("aria-describedby").split()
    assert "'x' is not a whole number" in page.locator("#error-batch_sizes").inner_text()


def test_the_model_picker_finds_models_says_what_is_chosen_and_previews_the_run(open_page, seeded_server):
    page = open_page(seeded_server)
    page.goto("/runs")
    groups = page.locator(".model-group-title").all_inner_texts()
    assert [group.lower() for group in groups] == ["tiny sizes (quick checks and tests)", "full sizes"]
    page.fill("#model-search", "gpt2")
    visible = page.locator(".model-choice:visible").all_inner_texts()
    assert visible and all("gpt2" in text for text in visible)
    page.check('input[name="models"][value="gpt2-tiny"]')
    assert page.locator("#models-selected").inner_text() == "1 selected: gpt2-tiny"
    page.fill("#run-batch-sizes", "1, 2, 4")
    page.locator("#run-preview-configs", has_text="3 configs").wait_for()
    # gpt2-tiny at fp32, batch 1 and 2, was measured with another environment: no reuse here,
    # and the duration says what history knows.
    assert "about" in page.locator("#run-preview-text").inner_text()


def test_the_progress_bar_has_a_name_and_its_label_reads(open_page, seeded_server):
    page = open_page(seeded_server)
    page.goto("/runs/seeded-int8")
    bar = page.get_by_role("progressbar", name="Run progress")
    assert bar.get_attribute("aria-valuenow") == "100"
    assert page.locator("#run-progress-label").inner_text() == "100%"
    assert page.locator("#run-results-body tr").count() == 3


def test_the_html_report_fits_a_phone_and_carries_environment_cis_duration_and_noisy_flags(open_page, seeded_server):
    page = open_page(seeded_server, PHONE)
    page.goto("/api/benchmark/reports/seeded-int8/report.html")
    page.locator("#throughput-chart svg").first.wait_for()
    widths = page.evaluate("[document.body.scrollWidth, document.body.clientWidth]")
    assert widths[0] <= widths[1], f"the report is {widths[0]}px wide on a {widths[1]}px phone"
    text = page.locator("body").inner_text()
    assert "Seeded Test CPU" in text and FINGERPRINT in text and "took 35.0 s" in text
    assert "11.000 – 412.000" in text  # the noisy result's CI
    assert page.locator(".badge.noisy").count() == 1
    screenshot(page, "report-phone-390")


PAGES = {
    "overview": "/",
    "comparison": "/comparison",
    "runs": "/runs",
    "run": "/runs/seeded-fp32",
    "result": None,  # the sampled result's page
    "reports": "/reports",
    "sql": "/sql",
    "sql-result": "/sql?q=" + quote(SQL),
}



@pytest.mark.parametrize("name", list(PAGES))
def test_each_page_fits_a_phone_and_has_no_serious_accessibility_violation(open_page, seeded_server, sampled, name):
    url = PAGES[name] or f"/results/{sampled['result_id']}"
    assert_fits_a_phone_and_is_accessible(open_page, seeded_server, url, name)


CHART_PAGES = {
    "overview": "/",
    "comparison": "/comparison",
    "comparison-every-run": "/comparison?runs=all",
    "sql": f"/sql?q={quote(SQL)}",
    "report": "/api/benchmark/reports/seeded-int8/report.html",
}


@pytest.mark.parametrize("name", [*CHART_PAGES, "result"])
def test_charts_draw_without_a_vega_warning(open_page, seeded_server, sampled, name):
    url = CHART_PAGES.get(name) or f"/results/{sampled['result_id']}"
    assert warnings_while_charts_draw(open_page(seeded_server), url) == []


@pytest.mark.parametrize("url", ["/comparison", "/"])
def test_back_and_forward_show_the_filters_of_the_url_they_return_to(open_page, seeded_server, url):
    page = open_page(seeded_server)
    page.goto(url)
    precision = page.locator("form.filters [name=precision]")

    def showing(choice: str) -> str:
        """Once the URL and every chart's rows are of ``choice`` precision: the control's value."""
        page.wait_for_url(re.compile(rf"precision={choice}"))
        page.wait_for_function(
            """choice => {
                const charts = [...document.querySelectorAll('[data-vega-spec]')];
                const rows = charts.flatMap(chart =>
                    JSON.parse(document.getElementById(chart.dataset.vegaSpec).textContent).datasets.rows);
                return rows.length > 0 && rows.every(row => row.series.includes(choice));
            }""",
            arg=choice,
        )
        return precision.input_value()

    for choice in ("fp32", "int8"):
        precision.select_option(choice)
        assert showing(choice) == choice
    page.go_back()
    assert showing("fp32") == "fp32"
    page.go_forward()
    assert showing("int8") == "int8"


def test_back_on_the_compare_page_shows_the_run_of_the_url_it_returns_to(open_page, seeded_server):
    page = open_page(seeded_server)
    page.goto("/compare")
    for run_id in ("seeded-fp32", "seeded-int8"):
        page.select_option("#compare-history", run_id)
        page.click("#compare-history-submit")
        page.locator("#compare-body", has_text=f"Run {run_id} against").wait_for()
    page.go_back()
    page.wait_for_url(re.compile("history=seeded-fp32"))
    page.locator("#compare-body", has_text="Run seeded-fp32 against").wait_for()
    assert page.locator("#compare-history").input_value() == "seeded-fp32"
