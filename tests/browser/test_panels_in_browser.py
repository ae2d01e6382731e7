"""Custom dashboard tabs in headless Chromium, against a real server with a panels folder and a
``benchboard.panels`` entry point installed (a real dist-info on the server's PYTHONPATH).

The results the panels chart are rows written into the server's DuckDB file before it starts,
with the storage module's own connection: panels only read tables, and measuring models
would add minutes without testing anything here. Every test fails if the page logged a JS
error.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from urllib.parse import urlsplit

import httpx
import pytest
from browser_helpers import LAPTOP, PHONE, RUN_TIMEOUT_S, serious_axe_violations, warnings_while_charts_draw

from storage.database import Database

pytestmark = pytest.mark.browser

LATENCY_SQL = (
    "SELECT model_name, avg(p50_latency_ms) AS p50 FROM results_view GROUP BY model_name ORDER BY model_name"
)

FOLDER_TAB = '''title = "From a folder"
[[panels]]
title = "Throughput by model"
chart = "bar"
x = "model_name"
y = "throughput"
sql = """
SELECT model_name, max(throughput_items_per_second) AS throughput
FROM results_view GROUP BY model_name ORDER BY model_name
"""
'''

LIVE_TAB = """title = "Live"
[[panels]]
title = "Results so far"
chart = "bar"
x = "model_name"
y = "results"
refresh_s = 5
sql = "SELECT model_name, count(*) AS results FROM results_view GROUP BY model_name ORDER BY model_name"
"""

PLUGIN = """
import altair as alt

from webapp.panels import Panel, Tab


def latency_points(rows):
    return alt.Chart(rows).mark_point(size=80).encode(x="batch_size:Q", y="p50:Q", color="model_name:N")


def tabs():
    return Tab(name="from-a-plugin", title="From a plugin", panels=[
        Panel(title="Latency drawn by plugin code", render=latency_points,
              sql="SELECT model_name, batch_size, avg(p50_latency_ms) AS p50 FROM results_view "
                  "GROUP BY model_name, batch_size ORDER BY model_name, batch_size"),
    ])
"""


def seed_results(path) -> None:
    with Database(path) as db, db.writing() as cursor:
        cursor.execute(
            "INSERT INTO models (model_name, model_family) VALUES ('bert-tiny', 'bert'), ('gpt2-tiny', 'gpt2')"
        )
        cursor.execute(
            "INSERT INTO hardware_platforms (hardware_type, device_name, platform) VALUES ('cpu', 'CPU', 'cpu')"
        )
        for model_id, scale in ((1, 1.0), (2, 3.0)):
            for batch_size in (1, 4):
                cursor.execute(
                    "INSERT INTO performance_results (run_id, model_id, hardware_id, batch_size, precision, "
                    "sequence_length, p50_latency_ms, throughput_items_per_second, ci_met, n_samples) "
                    "VALUES ('seeded', ?, 1, ?, 'fp32', 128, ?, ?, true, 50)",
                    [model_id, batch_size, scale * batch_size, 1000 / scale],
                )


@pytest.fixture(scope="module")
def panels_server(tmp_path_factory):
    from integration.server import start_server

    root = tmp_path_factory.mktemp("panels-server")
    seed_results(root / "benchmarks.duckdb")
    (root / "panels").mkdir()
    (root / "panels" / "from-a-folder.toml").write_text(FOLDER_TAB)
    (root / "panels" / "live.toml").write_text(LIVE_TAB)
    plugin = root / "plugin"
    plugin.mkdir()
    (plugin / "benchboard_test_panels.py").write_text(PLUGIN)
    dist_info = plugin / "benchboard_test_panels-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: benchboard-test-panels\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[benchboard.panels]\nplugin = benchboard_test_panels:tabs\n")
    with pytest.MonkeyPatch.context() as patch:
        # The server reads the environment when it is made: the plugin is on its sys.path.
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(plugin), os.environ.get("PYTHONPATH")])))
        server = start_server(root, panels_dir=root / "panels")
    with server:
        yield server


@pytest.fixture
def page(browser, panels_server, console_errors):
    context = browser.new_context(viewport=LAPTOP, base_url=panels_server.url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    console_errors.watch(page)
    yield page
    context.close()
    assert list(console_errors) == [], "the browser console reported errors"


def drawn_chart(page, key: str):
    """A panel's chart once vega-embed has drawn it. The wait names data-rendered='true' itself:
    a panel shown again swaps in a new chart element, and the marks can exist a moment before
    app.js marks the embed done, so waiting for the marks and then reading the flag was a race."""
    page.locator(f"#panel-{key}-chart[data-rendered='true'] svg.marks").first.wait_for()
    return page.locator(f"#panel-{key}-chart")


def chart_rows(page, key: str) -> list[dict]:
    return json.loads(page.locator(f"#panel-{key}-spec").text_content())["datasets"]["rows"]


def bar_count(page, key: str) -> int:
    return drawn_chart(page, key).locator("g.mark-rect.role-mark path").count()


def save_from_sql_page(
    page, sql: str, tab: str, title: str, chart: str = "bar", x: str = "model_name", y: str = "p50"
) -> str:
    """Run ``sql`` on the SQL page and save it as a panel; the new panel's key on its tab."""
    page.goto("/sql")
    page.fill("#sql-input", sql)
    page.click("#sql-run")
    page.locator("#sql-table tbody tr").first.wait_for()
    page.click("#panel-save summary")
    page.fill("#panel-save-tab", tab)
    page.fill("#panel-save-title", title)
    page.select_option("#panel-save-chart", chart)
    page.select_option("#panel-save-x", x)
    page.select_option("#panel-save-y", y)
    page.click("#panel-save-submit")
    page.wait_for_url(re.compile(r"/tabs/[a-z0-9-]+$"))
    panel = page.locator("article.tab-panel", has=page.locator("h2", has_text=title)).last
    return panel.get_attribute("data-panel")


def unique_tab() -> str:
    return f"Browser {uuid.uuid4().hex[:8]}"


def test_a_query_saved_from_the_sql_page_appears_as_a_tab_with_its_chart(page):
    tab = unique_tab()
    key = save_from_sql_page(page, LATENCY_SQL, tab, "Median latency by model")
    slug = tab.lower().replace(" ", "-")
    assert page.url.endswith(f"/tabs/{slug}")
    assert page.locator(f"#nav-tab-{slug}").inner_text() == tab  # in the navigation, after the built-ins
    assert page.locator(f"#nav-tab-{slug}").get_attribute("aria-current") == "page"
    assert bar_count(page, key) == 2
    assert [row["model_name"] for row in chart_rows(page, key)] == ["bert-tiny", "gpt2-tiny"]
    meta = page.locator(f"#panel-{key}-meta")
    assert "2 rows" in meta.inner_text() and "ran at" in meta.inner_text()
    assert page.locator(f"#panel-{key}-sql").text_content() == LATENCY_SQL
    page.goto("/")  # every page's navigation lists the tab
    assert page.locator(f"#nav-tab-{slug}").count() == 1


def test_editing_a_panels_sql_changes_its_chart(page):
    key = save_from_sql_page(page, LATENCY_SQL, unique_tab(), "Latency to edit")
    assert bar_count(page, key) == 2
    page.click(f"#panel-{key}-edit summary")
    page.fill(
        f"#panel-{key}-edit-sql", LATENCY_SQL.replace("GROUP BY", "WHERE model_name = 'gpt2-tiny' GROUP BY")
    )
    page.click(f"#panel-{key}-save")
    page.locator(f"#panel-{key}-meta .panel-rows[data-rows='1']").wait_for()
    assert bar_count(page, key) == 1
    assert [row["model_name"] for row in chart_rows(page, key)] == ["gpt2-tiny"]
    page.reload()  # stored: the tab shows the edited panel from now on
    assert bar_count(page, key) == 1


def tab_with_a_model_input(page):
    """A new tab whose one panel filters by ``$model`` (bert-tiny): its key and the input, shown."""
    key = save_from_sql_page(page, LATENCY_SQL, unique_tab(), "Latency of one model")
    page.click(f"#panel-{key}-edit summary")
    page.fill(f"#panel-{key}-edit-sql", LATENCY_SQL.replace("GROUP BY", "WHERE model_name = $model GROUP BY"))
    page.fill(f"#panel-{key}-edit-params", "model = bert-tiny")
    page.click(f"#panel-{key}-save")
    model = page.locator("#param-model")  # the tab is shown again with its new input
    model.wait_for()
    return key, model


def test_a_model_input_reruns_the_panel(page):
    key, model = tab_with_a_model_input(page)
    assert model.input_value() == "bert-tiny"
    drawn_chart(page, key)
    assert [row["model_name"] for row in chart_rows(page, key)] == ["bert-tiny"]

    model.fill("gpt2-tiny")
    model.press("Enter")
    page.wait_for_url(re.compile(r"model=gpt2-tiny"))
    page.wait_for_function(
        f"() => JSON.parse(document.getElementById('panel-{key}-spec').textContent)"
        ".datasets.rows.every(row => row.model_name === 'gpt2-tiny')"
    )
    drawn_chart(page, key)
    assert "$model" in page.locator(f"#panel-{key}-query").text_content()

    # Back and Forward: the input says what the URL and the panel hold.
    def showing(model_name: str) -> str:
        page.wait_for_url(re.compile(rf"model={model_name}"))
        page.wait_for_function(
            f"() => JSON.parse(document.getElementById('panel-{key}-spec').textContent)"
            f".datasets.rows.every(row => row.model_name === '{model_name}')"
        )
        return page.locator("#param-model").input_value()

    model.fill("bert-tiny")
    page.click("#tab-params-run")
    assert showing("bert-tiny") == "bert-tiny"
    page.go_back()
    assert showing("gpt2-tiny") == "gpt2-tiny"
    page.go_forward()
    assert showing("bert-tiny") == "bert-tiny"


def test_enter_in_a_tab_input_reruns_the_tab_once_with_one_history_entry(page):
    key, model = tab_with_a_model_input(page)
    drawn_chart(page, key)
    tab_path = urlsplit(page.url).path
    sent = []
    page.on("request", lambda request: urlsplit(request.url).path == tab_path and sent.append(request.url))
    entries = page.evaluate("history.length")

    model.fill("gpt2-tiny")
    model.press("Enter")  # the input's change, then the form's submit: one rerun, not two
    page.wait_for_url(re.compile(r"model=gpt2-tiny"))
    page.wait_for_function(
        f"() => JSON.parse(document.getElementById('panel-{key}-spec').textContent)"
        ".datasets.rows.every(row => row.model_name === 'gpt2-tiny')"
    )
    page.wait_for_timeout(500)  # time for a second request, were one sent
    assert len(sent) == 1, sent
    assert page.evaluate("history.length") == entries + 1

    model.fill("bert-tiny")
    page.click("#tab-params-run")  # the input's change as it loses the focus, then the submit
    page.wait_for_url(re.compile(r"model=bert-tiny"))
    page.wait_for_timeout(500)
    assert len(sent) == 2, sent


def test_the_overview_of_results_stored_without_a_ci_draws_without_a_vega_warning(page):
    # seed_results stores no CI: the charts leave out their error bars rather than give Vega an
    # empty extent to scale.
    assert warnings_while_charts_draw(page, "/") == []


def test_a_refused_query_cannot_be_saved(page):
    page.goto("/sql")
    page.fill("#sql-input", "SELECT * FROM read_csv('/etc/passwd')")
    page.click("#sql-run")
    page.locator("#sql-refusal").wait_for()
    assert page.locator("#panel-save").count() == 0  # no save form under a refusal

    # Nor through a crafted form post: the server runs the guard before it stores anything.
    csrf = next(cookie["value"] for cookie in page.context.cookies() if cookie["name"] == "csrftoken")
    tab = unique_tab()
    answer = page.request.post(
        "/panels",
        form={
            "_csrf_token": csrf,
            "tab": tab,
            "title": "Hostile",
            "chart": "table",
            "sql": "SELECT * FROM read_csv('/etc/passwd')",
        },
        headers={"HX-Request": "true"},
    )
    assert answer.status == 400
    assert "Refused" in answer.text() and "not saved" in answer.text()
    page.goto("/tabs")
    assert tab not in page.locator("main").inner_text()
    assert page.request.get(f"/tabs/{tab.lower().replace(' ', '-')}").status == 404


def test_panels_from_a_folder_file_and_an_entry_point_both_render(page):
    page.goto("/tabs/from-a-folder")
    assert page.locator("#tab-title").inner_text() == "From a folder"
    assert bar_count(page, "n0") == 2
    assert "from-a-folder.toml" in page.locator("#tab-source").inner_text()

    page.click("#nav-tab-from-a-plugin")
    page.wait_for_url(re.compile(r"/tabs/from-a-plugin$"))
    chart = drawn_chart(page, "n0")
    (rows,) = json.loads(page.locator("#panel-n0-spec").text_content())["datasets"].values()
    assert len(rows) >= 4  # (model, batch size) pairs
    assert chart.locator("g.mark-symbol.role-mark path").count() == len(rows)  # the plugin's point chart
    assert "entry point plugin = benchboard_test_panels:tabs" in page.locator("#tab-source").inner_text()


def test_a_live_panel_redraws_when_a_run_lands_a_result(page, panels_server):
    page.goto("/tabs/live")
    assert [row["results"] for row in chart_rows(page, "n0")] == [2, 2]
    reply = httpx.post(
        f"{panels_server.url}/api/benchmark/run",
        timeout=30,
        json={"models": ["bert-tiny"], "batch_sizes": [8], "progressive_mode": False, "force": True},
    )
    assert reply.status_code == 202, reply.text
    # No reload: the tab's SSE stream sends the panel again once the result is stored.
    page.wait_for_function(
        "() => JSON.parse(document.getElementById('panel-n0-spec').textContent)"
        ".datasets.rows.some(row => row.model_name === 'bert-tiny' && row.results === 3)",
        timeout=RUN_TIMEOUT_S * 1000,
    )
    drawn_chart(page, "n0")





@pytest.mark.parametrize("url", ["/tabs", "/tabs/from-a-folder", "/tabs/from-a-plugin", "/sql?save"])
@pytest.mark.parametrize("viewport", [PHONE, LAPTOP], ids=["phone", "laptop"])
def test_tab_pages_and_the_save_form_fit_a_phone_and_have_no_serious_accessibility_violation(
    browser, panels_server, console_errors, url, viewport
):
    context = browser.new_context(viewport=viewport, base_url=panels_server.url)
    page = context.new_page()
    console_errors.watch(page)
    if url == "/sql?save":
        page.goto("/sql")
        page.fill("#sql-input", LATENCY_SQL)
        page.click("#sql-run")
        page.click("#panel-save summary")
    else:
        page.goto(url)
    page.wait_for_function(
        "[...document.querySelectorAll('[data-vega-spec]')].every(c => c.dataset.rendered)"
    )
    widths = page.evaluate("[document.body.scrollWidth, document.body.clientWidth]")
    assert widths[0] <= widths[1], f"{url} is {widths[0]}px wide on a {widths[1]}px screen"
    assert serious_axe_violations(page) == []
    context.close()
    assert list(console_errors) == []
