"""Generate results on the dashboard (issue 11), in headless Chromium.

One server for the module, on a database seeded before it starts (tests/browser/seeded_generation.py):
gpt2-tiny and t5-tiny generations at batch sizes 1, 2 and 4 beside bert-tiny's forward passes.
The charts and tables are checked against what the server stores (its JSON API), not against
numbers written here. One test measures a real generation (gpt2-tiny, 4 new tokens) from the
run form, to watch its row arrive on the live run page.

Every test fails if the page logged a JS error (the ``open_page`` fixture).
"""

from __future__ import annotations

import re

import httpx
import pytest
from browser_helpers import (
    PHONE,
    RUN_TIMEOUT_S,
    assert_fits_a_phone_and_is_accessible,
    screenshot,
    warnings_while_charts_draw,
)
from seeded_generation import BATCH_SIZES, GENERATORS, NEW_TOKENS, PROMPT, seed

pytestmark = pytest.mark.browser

SERIES = {model: f"{model} · fp32 · seq {PROMPT} · {NEW_TOKENS} new tokens" for model in GENERATORS}


@pytest.fixture(scope="module")
def generation_server(tmp_path_factory):
    from integration.server import start_server

    folder = tmp_path_factory.mktemp("generation-server")
    seed(folder / "generation.duckdb", folder / "results")  # the server's results folder (integration.server)
    with start_server(folder, db_path=folder / "generation.duckdb", max_seconds=0.3, prestart_workers=False) as running:
        yield running


@pytest.fixture(scope="module")
def stored(generation_server) -> list[dict]:
    """The seeded generate results as the API serves them."""
    reply = httpx.get(f"{generation_server.url}/api/benchmark/results/seeded-generate", timeout=30)
    assert reply.status_code == 200, reply.text
    rows = reply.json()["results"]
    assert len(rows) == len(GENERATORS) * len(BATCH_SIZES)
    return rows


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


def column(page, table: str, name: str) -> list[str]:
    """The texts of one column (by its header's data-column) of ``table``'s body rows."""
    index = page.locator(f"{table} thead th").evaluate_all(
        f"cells => cells.findIndex(cell => cell.dataset.column === {name!r})"
    )
    assert index >= 0, f"{table} has no {name} column"
    return page.locator(f"{table} tbody tr td:nth-child({index + 1})").all_inner_texts()


def test_the_metric_picker_offers_ttft_and_picking_it_charts_the_stored_values(open_page, generation_server, stored):
    page = open_page(generation_server)
    page.goto("/")
    options = dict(zip(page.locator("#filter-metric option").evaluate_all("options => options.map(o => o.value)"),
                       page.locator("#filter-metric option").all_inner_texts(), strict=True))
    assert {"ttft": "TTFT p50 (ms)", "tpot": "TPOT p50 (ms)", "decode_tps": "Decode (tokens/s)"}.items() <= options.items()

    # Throughput is measured in both scenarios: forward passes and generations are lines of their own.
    scaling = drawn(page, "chart-scaling")
    series = {row["series"] for row in view_rows(page, "chart-scaling")}
    assert series == {f"bert-tiny · fp32 · seq {PROMPT}",
                      *(f"{model} · fp32 · seq {PROMPT} · generate {NEW_TOKENS} tokens" for model in GENERATORS)}
    assert scaling.locator("g.mark-line path").count() == len(series)

    page.select_option("#filter-metric", "ttft")
    page.wait_for_url(re.compile(r"metric=ttft"))
    page.locator("#chart-scaling-title", has_text="TTFT p50 (ms) vs batch size").wait_for()
    chart = drawn(page, "chart-scaling")
    points = {(row["model_name"], row["batch_size"]): row for row in view_rows(page, "chart-scaling")}
    # Every drawn point is a stored TTFT median with the CI of that median: generate rows only.
    assert points.keys() == {(row["model_name"], row["batch_size"]) for row in stored}
    for row in stored:
        point = points[(row["model_name"], row["batch_size"])]
        assert (point["value"], point["ci_low"], point["ci_high"], point["n"]) == pytest.approx(
            (row["ttft_ms"], row["ttft_ci_low_ms"], row["ttft_ci_high_ms"], 1))
        assert point["series"] == f"{row['model_name']} · fp32 · seq {PROMPT} · generate {NEW_TOKENS} tokens"
    assert chart.locator("g.mark-line path").count() == len(GENERATORS)  # a line per model, none to bert-tiny
    # The top-models table ranks by the lowest TTFT.
    first = page.locator(".top-models-table tbody tr").first.locator("td").all_inner_texts()
    best = min(stored, key=lambda row: row["ttft_ms"])
    assert (first[1], float(first[4])) == (best["model_name"], pytest.approx(best["ttft_ms"], abs=0.005))

    page.select_option("#filter-metric", "decode_tps")
    page.wait_for_url(re.compile(r"metric=decode_tps"))
    page.locator("#chart-scaling-title", has_text="Decode (tokens/s)").wait_for()
    drawn(page, "chart-scaling")
    decoded = {(row["model_name"], row["batch_size"]): row["value"] for row in view_rows(page, "chart-scaling")}
    assert decoded == pytest.approx({(row["model_name"], row["batch_size"]): row["decode_tokens_per_second"]
                                     for row in stored})
    screenshot(page, "overview-decode-tokens")


def test_the_ttft_and_tpot_chart_has_one_series_per_model(open_page, generation_server, stored):
    page = open_page(generation_server)
    page.goto("/")
    assert page.locator("#generation-scaling-title").inner_text() == "Generation: TTFT and TPOT by batch size"
    chart = drawn(page, "chart-generation")
    rows = view_rows(page, "chart-generation")
    assert {row["series"] for row in rows} == set(SERIES.values())
    assert {row["model_name"] for row in rows} == set(GENERATORS)  # bert-tiny's forward passes are not here
    values = {(row["model_name"], row["measure"], row["batch_size"]): row["value"] for row in rows}
    assert values == pytest.approx({
        **{(row["model_name"], "TTFT", row["batch_size"]): row["ttft_ms"] for row in stored},
        **{(row["model_name"], "TPOT", row["batch_size"]): row["tpot_ms"] for row in stored},
    })
    # One line per model for each measure: TTFT solid, TPOT dashed; an error bar per point.
    assert chart.locator("g.mark-line path").count() == 2 * len(GENERATORS)
    assert chart.locator("g.mark-rule line, g.mark-rule path").count() >= len(rows)
    legend = set(chart.locator("g.role-legend-label text").all_text_contents())
    assert set(SERIES.values()) <= legend and {"TTFT", "TPOT"} <= legend
    # The chart's data table says how many results each point covers.
    page.locator("#generation-scaling .chart-data summary").click()
    assert page.locator("#generation-scaling .chart-data tbody tr").count() == len(rows)
    screenshot(page, "overview-generation")

    # Forward results only: no generation to draw, and the page says so.
    page.goto("/?scenario=forward")
    assert page.locator("#generation-empty").is_visible()


def test_the_comparison_table_shows_the_generation_columns_and_the_scenario_filter_keeps_them_apart(
    open_page, generation_server, stored
):
    page = open_page(generation_server)
    page.goto("/comparison?sort=ttft_ms&direction=asc&scenario=generate")
    assert page.locator("#filter-scenario option").all_inner_texts() == ["Any", "forward", "generate"]
    ttft = column(page, "#results-table", "ttft_ms")
    assert [float(text) for text in ttft] == pytest.approx(sorted(row["ttft_ms"] for row in stored), abs=5e-4)
    decode = [float(text.replace(",", "")) for text in column(page, "#results-table", "decode_tokens_per_second")]
    assert decode == pytest.approx([row["decode_tokens_per_second"]
                                    for row in sorted(stored, key=lambda row: row["ttft_ms"])], abs=0.05)
    assert set(column(page, "#results-table", "scenario")) == {f"generate {NEW_TOKENS} tokens"}

    page.select_option("#filter-scenario", "forward")
    page.wait_for_url(re.compile(r"scenario=forward"))
    page.locator("#results-count", has_text="· 2 rows").wait_for()
    assert set(column(page, "#results-table", "scenario")) == {"forward"}
    assert page.locator('#results-table thead th[data-column="ttft_ms"]').count() == 0


def test_the_result_page_of_a_generation_shows_every_figure_and_its_samples_histograms(
    open_page, generation_server, stored
):
    result = next(row for row in stored if row["model_name"] == "gpt2-tiny" and row["batch_size"] == 1)
    page = open_page(generation_server)
    page.goto(f"/results/{result['result_id']}")
    assert "generate 16 new tokens" in page.locator("#result-config").inner_text()
    assert page.locator("#summary-ttft").inner_text().startswith(f"{result['ttft_ms']:,.3f} ms")
    statistics = dict(zip(page.locator("#statistics-table th").all_inner_texts(),
                          page.locator("#statistics-table td").all_inner_texts(), strict=True))
    for label, name, digits in (("Time to first token (TTFT), median (ms)", "ttft_ms", 4),
                                ("TTFT p99 (ms)", "ttft_p99_ms", 4), ("TPOT p90 over every per-token gap (ms)", "tpot_p90_ms", 4),
                                ("Time per output token (TPOT), median (ms)", "tpot_ms", 4),
                                ("End-to-end generation, median (ms)", "e2e_ms", 4),
                                ("Decode throughput (tokens/s)", "decode_tokens_per_second", 1),
                                ("Prefill throughput (tokens/s)", "prefill_tokens_per_second", 1)):
        assert statistics[label] == f"{result[name]:,.{digits}f}", label
    # The raw samples the engine keeps: every generation's TTFT, every per-token gap.
    drawn(page, "chart-ttft-histogram")
    drawn(page, "chart-gaps-histogram")
    assert sum(row["count"] for row in view_rows(page, "chart-ttft-histogram")) == result["n_samples"]
    assert sum(row["count"] for row in view_rows(page, "chart-gaps-histogram")) == result["n_samples"] * (NEW_TOKENS - 1)
    assert page.locator("#chart-gaps-histogram-title").inner_text() == (
        f"Distribution of {result['n_samples'] * (NEW_TOKENS - 1):,} per-token gaps")
    # Measuring it again measures the generation again, not a forward pass.
    form = page.locator("#measure-again-form")
    assert form.locator('input[name="scenario"]').get_attribute("value") == "generate"
    assert form.locator('input[name="new_tokens"]').get_attribute("value") == str(NEW_TOKENS)
    screenshot(page, "result-generation")


def test_a_generate_run_page_shows_ttft_tpot_and_decode_columns_on_reload(open_page, generation_server, stored):
    page = open_page(generation_server)
    page.goto("/runs/seeded-generate")
    assert "generate 16 new tokens" in page.locator(".page-header p").first.inner_text()
    by_key = {(row["model_name"], row["batch_size"]): row for row in stored}
    shown = zip(column(page, "#run-results", "model"), column(page, "#run-results", "batch_size"),
                column(page, "#run-results", "ttft_ms"), column(page, "#run-results", "tpot_ms"),
                column(page, "#run-results", "decode_tokens_per_second"), strict=True)
    seen = set()
    for model, batch_size, ttft, tpot, decode in shown:
        row = by_key[(model, int(batch_size))]
        seen.add((model, int(batch_size)))
        assert (ttft, tpot, decode) == (f"{row['ttft_ms']:,.3f}", f"{row['tpot_ms']:,.3f}",
                                        f"{row['decode_tokens_per_second']:,.1f}")
    assert seen == by_key.keys()
    # A forward run keeps its columns as they were.
    page.goto("/runs/seeded-forward")
    assert page.locator('#run-results thead th[data-column="ttft_ms"]').count() == 0
    # The runs list says which run generated.
    page.goto("/runs")
    assert page.locator("#run-row-seeded-generate [data-scenario]").inner_text() == f"· generate {NEW_TOKENS} tokens"
    assert page.locator("#run-row-seeded-forward [data-scenario]").count() == 0


def test_a_generate_run_started_from_the_form_shows_its_generation_figures_as_rows_land(open_page, generation_server):
    page = open_page(generation_server)
    page.goto("/runs")
    page.check('input[name="models"][value="gpt2-tiny"]')
    page.fill("#run-batch-sizes", "1")
    page.fill("#run-sequence-length", "16")
    page.select_option("#run-scenario", "generate")
    page.fill("#run-new-tokens", "4")
    page.uncheck("#run-progressive")
    page.uncheck("#run-incremental")
    page.click("#run-submit")
    page.wait_for_url(re.compile(r"/runs/[0-9a-f]+$"))
    run_id = page.url.rsplit("/", 1)[1]
    page.evaluate("window.sameDocument = true")  # a reload would wipe it: the row must arrive live
    header = page.locator('#run-results thead th[data-column="ttft_ms"]')
    assert header.text_content().strip() == "TTFT p50 (ms)"
    row = page.locator("#run-results-body tr.run-row").first
    row.wait_for(timeout=RUN_TIMEOUT_S * 1000)
    page.locator('#run-progress[data-status="completed"]').wait_for(timeout=RUN_TIMEOUT_S * 1000)
    assert page.evaluate("window.sameDocument") is True
    assert row.get_attribute("data-outcome") == "ok"
    # Sent over the stream (the partial a live event renders), not drawn with the page: the
    # worker has torch to import and a model to build before any row exists.
    assert "new-row" in row.get_attribute("class").split()
    measured = httpx.get(f"{generation_server.url}/api/benchmark/results/{run_id}", timeout=30).json()["results"]
    assert len(measured) == 1 and measured[0]["scenario"] == "generate" and measured[0]["new_tokens"] == 4
    for name, digits in (("ttft_ms", 3), ("tpot_ms", 3), ("decode_tokens_per_second", 1)):
        cell = row.locator(f'td[data-column="{name}"]').inner_text()
        assert cell == f"{measured[0][name]:,.{digits}f}", name
    screenshot(page, "run-generate-finished")


def test_the_html_report_of_a_generate_run_has_its_generation_table_and_fits_a_phone(open_page, generation_server,
                                                                                    stored):
    page = open_page(generation_server, PHONE)
    page.goto("/api/benchmark/reports/seeded-generate/report.html")
    page.locator("#throughput-chart svg").first.wait_for()
    widths = page.evaluate("[document.body.scrollWidth, document.body.clientWidth]")
    assert widths[0] <= widths[1], f"the report is {widths[0]}px wide on a {widths[1]}px phone"
    generation = page.locator("h2", has_text="Generation").locator("xpath=following-sibling::div[1]//table")
    headers = generation.locator("thead th").all_inner_texts()
    cells = [dict(zip(headers, row.locator("td").all_inner_texts(), strict=True))
             for row in generation.locator("tbody tr").all()]
    assert len(cells) == len(stored)
    by_key = {(row["model_name"], row["batch_size"]): row for row in stored}
    for shown in cells:
        row = by_key[(shown["Model"], int(shown["Batch"]))]
        assert (shown["TTFT p50 ms"], shown["TPOT p50 ms"], shown["Decode tok/s"]) == (
            f"{row['ttft_ms']:.3f}", f"{row['tpot_ms']:.3f}", f"{row['decode_tokens_per_second']:.1f}")
    screenshot(page, "report-generation-phone-390")


PAGES = {
    "overview-generation": "/",
    "overview-ttft": "/?metric=ttft",
    "comparison-generation": "/comparison?metric=tpot",
    "run-generate": "/runs/seeded-generate",
    "runs-generate": "/runs",
    "result-generation": None,  # gpt2-tiny's batch-1 generation
}



@pytest.mark.parametrize("name", list(PAGES))
def test_each_generation_view_fits_a_phone_and_has_no_serious_accessibility_violation(
    open_page, generation_server, stored, name
):
    url = PAGES[name] or f"/results/{stored[0]['result_id']}"
    assert_fits_a_phone_and_is_accessible(open_page, generation_server, url, name)


# The pages above that draw charts, and the run's HTML report.
CHART_PAGES = {name: PAGES[name] for name in ("overview-generation", "overview-ttft", "comparison-generation",
                                              "result-generation")} | {
    "report-generation": "/api/benchmark/reports/seeded-generate/report.html"}


@pytest.mark.parametrize("name", list(CHART_PAGES))
def test_generation_charts_draw_without_a_vega_warning(open_page, generation_server, stored, name):
    url = CHART_PAGES[name] or f"/results/{stored[0]['result_id']}"
    assert warnings_while_charts_draw(open_page(generation_server), url) == []
