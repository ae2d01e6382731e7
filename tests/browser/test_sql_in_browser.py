"""The SQL page in headless Chromium (issue 14): the schema sidebar, the PIVOT forms, syntax
errors in plain words, the downloads, on a laptop and a 390 px phone.

One server for the module, on the database tests/browser/seeded.py writes (9 results, 2 runs).
Every test fails if the page logged a JS error (the ``open_page`` fixture).
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from browser_helpers import LAPTOP, PHONE, screenshot, serious_axe_violations
from seeded import seed

from storage.schema import ALLOWED_QUERY_TABLES

pytestmark = pytest.mark.browser



@pytest.fixture(scope="module")
def sql_server(tmp_path_factory):
    from integration.server import start_server

    folder = tmp_path_factory.mktemp("sql-server")
    seed(folder / "seeded.duckdb", folder / "results")
    with start_server(folder, db_path=folder / "seeded.duckdb", max_seconds=0.3, prestart_workers=False) as running:
        yield running


def api_sql(server, sql: str) -> dict:
    reply = httpx.post(f"{server.url}/api/benchmark/sql", json={"sql": sql}, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()



def test_the_sidebar_lists_the_allowlisted_tables_and_views_with_their_columns_from_the_catalog(
    open_page, sql_server
):
    page = open_page(sql_server)
    page.goto("/sql")
    sidebar = page.locator("#sql-schema")
    assert sidebar.evaluate("details => details.open") is True  # room beside the editor: open
    names = page.locator("#sql-schema .schema-table .schema-name").all_inner_texts()
    assert names == sorted(ALLOWED_QUERY_TABLES)  # and nothing else: no secrets, panels, schema_version
    # The columns are DuckDB's, in their order, with their types: the same as DESCRIBE says.
    described = api_sql(sql_server, "DESCRIBE results_view")["rows"]
    page.locator("#schema-results_view > summary").click()
    columns = page.locator("#schema-results_view .schema-column").all_inner_texts()
    types = page.locator("#schema-results_view .schema-type").all_inner_texts()
    assert list(zip(columns, types, strict=True)) == [(row[0], row[1]) for row in described]
    assert "samples_ms" in columns
    assert "view, " in page.locator("#schema-results_view > summary").inner_text()
    assert "table, " in page.locator("#schema-models > summary").inner_text()
    screenshot(page, "sql-schema-laptop")


def test_clicking_names_in_the_sidebar_writes_them_into_the_query_at_the_cursor(open_page, sql_server):
    page = open_page(sql_server)
    page.goto("/sql")
    page.fill("#sql-input", "SELECT  FROM ")
    page.focus("#sql-input")
    page.evaluate("document.getElementById('sql-input').setSelectionRange(7, 7)")
    page.locator("#schema-models > summary").click()
    page.locator('#schema-models .schema-column[data-insert="model_name"]').click()
    # The editor keeps the focus and the cursor follows the name, so the next click appends.
    assert page.evaluate("document.activeElement.id") == "sql-input"
    page.evaluate("const e = document.getElementById('sql-input'); e.setSelectionRange(e.value.length, e.value.length)")
    page.locator('#schema-models .schema-insert[data-insert="models"]').click()
    assert page.input_value("#sql-input") == "SELECT model_name FROM models"
    page.press("#sql-input", "Control+Enter")
    page.locator("#sql-table thead th", has_text="model_name").wait_for()
    assert sorted(page.locator("#sql-table tbody td").all_inner_texts()) == ["bert-tiny", "gpt2-tiny"]


def test_on_a_phone_the_sidebar_is_collapsed_fits_and_opens(open_page, sql_server):
    page = open_page(sql_server, PHONE)
    page.goto("/sql")
    sidebar = page.locator("#sql-schema")
    assert sidebar.evaluate("details => details.open") is False
    sidebar.locator("> summary").click()
    page.locator("#schema-performance_results > summary").click()
    page.locator("#schema-performance_results .schema-column").first.wait_for()
    widths = page.evaluate("[document.body.scrollWidth, document.body.clientWidth]")
    assert widths[0] <= widths[1], f"/sql is {widths[0]}px wide on a {widths[1]}px phone with the sidebar open"
    screenshot(page, "sql-schema-phone-390")
    assert serious_axe_violations(page) == []


def test_the_open_sidebar_has_no_serious_accessibility_violation_on_a_laptop(open_page, sql_server):
    page = open_page(sql_server, LAPTOP)
    page.goto("/sql?q=" + quote("SELECT model_name, avg(p50_latency_ms) AS p50_ms FROM results_view GROUP BY 1"))
    page.locator("#schema-results_view > summary").click()
    page.locator("#chart-sql svg.marks").first.wait_for()
    assert serious_axe_violations(page) == []


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        # DuckDB's PIVOT statement, plain: one column per precision.
        ("PIVOT results_view ON precision USING count(*) GROUP BY model_name",
         {"bert-tiny\t4\t3", "gpt2-tiny\t2\t0"}),
        # ... and with ORDER BY and LIMIT, which sqlglot cannot parse: run as a query around it.
        ("PIVOT results_view ON precision USING count(*) GROUP BY model_name ORDER BY model_name DESC LIMIT 1",
         {"gpt2-tiny\t2\t0"}),
    ],
)
def test_pivot_statements_run_on_the_page_with_and_without_order_by_and_limit(open_page, sql_server, sql, expected):
    page = open_page(sql_server)
    page.goto("/sql?q=" + quote(sql))
    assert page.locator("#sql-table thead th").all_text_contents() == ["model_name", "fp32", "int8"]
    assert set(page.locator("#sql-table tbody tr").all_inner_texts()) == expected
    assert page.input_value("#sql-input") == sql  # the query as typed, not as it runs


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT model_name\nFROM results_view JOIN models ON", 'line 2, column 31: unexpected "ON"'),
        ("SELEC model_name FROM results_view", "line 1, column 1: 'SELEC' does not start a statement"),
        ("SELECT model_name,, batch_size FROM results_view", "line 1, column 19: two commas in a row"),
        ("SELECT * FROM results_view WHERE", "line 1, column 32: the WHERE clause is incomplete"),
    ],
)
def test_syntax_errors_say_where_in_plain_words(open_page, sql_server, sql, reason):
    page = open_page(sql_server)
    page.goto("/sql")
    page.fill("#sql-input", sql)
    page.click("#sql-run")
    refusal = page.locator("#sql-refusal").inner_text()
    assert refusal.startswith(f"Syntax error at {reason}")
    for internal in ("sqlglot", "<class", "Token", "Invalid expression"):
        assert internal not in refusal
    assert page.locator("#sql-table").count() == 0


def test_the_answer_downloads_as_csv_and_as_json(open_page, sql_server):
    sql = "SELECT precision, count(*) AS results FROM results_view GROUP BY 1 ORDER BY 1"
    page = open_page(sql_server)
    page.goto("/sql?q=" + quote(sql))
    with page.expect_download() as csv_download:
        page.click("#sql-download-csv")
    assert csv_download.value.suggested_filename == "benchboard-query.csv"
    assert Path(csv_download.value.path()).read_text().splitlines() == ["precision,results", "fp32,6", "int8,3"]
    with page.expect_download() as json_download:
        page.click("#sql-download-json")
    assert json_download.value.suggested_filename == "benchboard-query.json"
    answer = json.loads(Path(json_download.value.path()).read_text())
    assert (answer["columns"], answer["rows"], answer["truncated"]) == (
        ["precision", "results"], [["fp32", 6], ["int8", 3]], False)


def test_a_capped_answer_shows_its_first_page_rows_and_downloads_every_row(open_page, sql_server):
    """10,000 rows of every performance_results column were a 22 MB page of 750,000 cells (33 s
    to load); the page now renders PAGE_ROWS of them and says so, and the downloads hold all."""
    from webapp.pages.sql import PAGE_ROWS

    sql = "SELECT a.* FROM performance_results a, performance_results b, performance_results c, performance_results d, performance_results e"
    api = api_sql(sql_server, sql)  # cut short by the server's row or byte cap
    returned = api["row_count"]
    assert api["truncated"] and returned > PAGE_ROWS
    page = open_page(sql_server)
    page.goto("/sql?q=" + quote(sql))
    assert page.locator("#sql-table tbody tr").count() == PAGE_ROWS
    assert page.locator("#sql-truncated").inner_text() == f"Cut short, {returned:,} rows returned: {api['truncated_reason']}."
    assert page.locator("#sql-shown").inner_text().startswith(
        f"Only the first {PAGE_ROWS} of the {returned:,} rows returned are shown here. The downloads hold all {returned:,}")
    with page.expect_download() as json_download:
        page.click("#sql-shown-json")
    answer = json.loads(Path(json_download.value.path()).read_text())
    assert (len(answer["rows"]), answer["truncated"]) == (returned, True)
    # The next query, run in place (HTMX, Ctrl+Enter), follows the same rule.
    sql = "SELECT a.result_id, b.batch_size FROM performance_results a, performance_results b, performance_results c"
    capped, returned = returned, api_sql(sql_server, "SELECT count(*) FROM performance_results")["rows"][0][0] ** 3
    assert PAGE_ROWS < returned < 10_000 and returned != capped
    page.fill("#sql-input", sql)
    page.press("#sql-input", "Control+Enter")
    # Waits for the new answer's own count: the capped one's row count also said "the first 500 shown".
    page.locator("#sql-row-count", has_text=f"· {returned:,} rows in").wait_for()
    assert page.locator("#sql-truncated").count() == 0
    assert page.locator("#sql-table tbody tr").count() == PAGE_ROWS
    assert page.locator("#sql-shown").inner_text().startswith(
        f"Only the first {PAGE_ROWS} of the {returned:,} rows the query returned are shown here.")
    with page.expect_download() as csv_download:
        page.click("#sql-shown-csv")
    assert len(Path(csv_download.value.path()).read_text().splitlines()) == returned + 1


def test_back_and_forward_show_the_query_of_the_url_they_return_to(open_page, sql_server):
    """An htmx history snapshot keeps the textarea as first rendered (the default example), so
    Back showed the URL's result under a query the user never ran, and Run would have run it."""
    page = open_page(sql_server)
    page.goto("/sql")

    first, second = "SELECT 1 AS first_query", "SELECT 2 AS second_query"

    def showing(sql: str) -> str:
        """Once the URL and the result are those of ``sql``: the editor's text."""
        page.wait_for_url(lambda url: parse_qs(urlsplit(url).query).get("q") == [sql])
        page.locator("#sql-table thead th", has_text=sql.split(" AS ")[1]).wait_for()
        return page.input_value("#sql-input")

    for sql in (first, second):
        page.fill("#sql-input", sql)
        page.click("#sql-run")
        assert showing(sql) == sql
    page.go_back()
    assert showing(first) == first
    page.go_forward()
    assert showing(second) == second
    page.go_back()
    assert showing(first) == first
    page.go_back()
    # Back to /sql itself: the default example again, and no result.
    page.wait_for_url(lambda url: urlsplit(url).query == "")
    page.locator("#sql-table").wait_for(state="detached")
    assert page.input_value("#sql-input").startswith("-- Get average throughput by model family and hardware")
