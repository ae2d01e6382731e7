"""The HTML pages, through the real app (create_app) on a DuckDB file in tmp_path.

No benchmark runs here: rows are stored directly, so the pages have something to show.
Live runs in a browser are in tests/browser/.
"""

import io
import json
import re
from datetime import datetime
from html.parser import HTMLParser

import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from litestar.testing import TestClient

from descriptions import model_description, result_store, stored_run
from engine.result import Measurement
from engine.runs import RunRequest
from storage.runs import save_run
from webapp.app import create_app
from webapp.reporting.reports import write_reports
from webapp.wiring.settings import Settings

HOSTILE = "<script>alert(1)</script>"
PAGES = ["/", "/comparison", "/runs", "/reports", "/sql"]


BERT = model_description("bert-tiny", "bert")
GPT2 = model_description("gpt2-tiny", "gpt2")
EVIL = model_description(HOSTILE, "<b>evil</b>")


def result(model, batch_size, p50, **fields) -> Measurement:
    return Measurement(
        model_name=model.name, hardware="cpu", batch_size=batch_size, average_latency_ms=p50, p50_latency_ms=p50,
        p90_latency_ms=p50 * 1.5, p99_latency_ms=p50 * 2, ci_met=True,
        throughput_items_per_second=batch_size / p50 * 1000, memory_peak_mb=10.0 * batch_size, **fields,
    )


def settings(tmp_path):
    return Settings(
        db_path=str(tmp_path / "pages.duckdb"),
        results_dir=str(tmp_path / "results"),
        log_dir=str(tmp_path / "logs"),
        resume=False,
        allowed_hosts=["testserver.local"],  # the Host that Litestar's TestClient sends
        prestart_workers=False,  # nothing here measures: no worker, no torch import beside the tests
    )


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("pages")
    with TestClient(create_app(settings(tmp_path))) as test_client:
        services = test_client.app.state.services
        save_run(
            services.db,
            stored_run(
                "run-a",
                total_configs=7,
                completed_configs=7,
                request=RunRequest(models=["bert-tiny", "gpt2-tiny"], hardware=["cpu"], batch_sizes=[1, 2, 4]),
                start_time=datetime(2024, 5, 1, 12, 0),
                completion_time=datetime(2024, 5, 1, 12, 1),
            ),
        )
        store = result_store(services.db, BERT, GPT2, EVIL)
        for measured in [
            result(BERT, 1, 10.0), result(BERT, 2, 12.0), result(BERT, 4, 16.0),
            result(GPT2, 1, 20.0), result(GPT2, 2, 30.0), result(EVIL, 1, 5.0),
        ]:
            store.record_result("run-a", measured, "fp")
        oom = Measurement(model_name=GPT2.name, hardware="cpu", batch_size=4, status="failed", error_type="oom",
                          error_message=f"out of memory {HOSTILE}")
        store.record_result("run-a", oom, "fp")
        write_reports(services.db, services.settings.results_path, "run-a")
        yield test_client


@pytest.fixture
def empty_client(tmp_path):
    with TestClient(create_app(settings(tmp_path))) as test_client:
        yield test_client


class Element:
    def __init__(self, tag: str, attrs: dict, parent=None):
        self.tag, self.attrs, self.parent, self.children, self.texts = tag, attrs, parent, [], []

    def iter(self):
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, tag=None, **attrs):
        return [
            element
            for element in self.iter()
            if (tag is None or element.tag == tag)
            and all(
                element.attrs.get(key.rstrip("_").replace("_", "-")) == value for key, value in attrs.items()
            )
        ]

    def by_id(self, element_id):
        found = self.find_all(id=element_id)
        assert len(found) == 1, f"{len(found)} elements with id {element_id!r}"
        return found[0]

    def text(self) -> str:
        return " ".join(" ".join(" ".join(element.texts) for element in self.iter()).split())


class _TreeBuilder(HTMLParser):
    VOID = {"input", "meta", "link", "br", "img", "hr", "col", "source"}

    def __init__(self):
        super().__init__()
        self.root = self.current = Element("#document", {})

    def handle_starttag(self, tag, attrs):
        element = Element(tag, {name: value or "" for name, value in attrs}, self.current)
        self.current.children.append(element)
        if tag not in self.VOID:
            self.current = element

    def handle_endtag(self, tag):
        node = self.current
        while node.parent is not None and node.tag != tag:
            node = node.parent
        if node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        self.current.texts.append(data)


def parse(html: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(html)
    return builder.root


def column(table: Element, name: str) -> list[str]:
    """The cells of the column headed ``name`` (its data-column) in a results table."""
    headers = [th.attrs.get("data-column") for th in table.find_all("th")]
    index = headers.index(name)
    return [row.find_all("td")[index].text() for row in table.find_all("tbody")[0].find_all("tr")]


def csrf_token(client) -> str:
    client.get("/runs")
    return client.cookies["csrftoken"]


@pytest.mark.parametrize("url", PAGES)
def test_every_page_is_a_full_page_with_the_nav_marking_where_you_are(client, url):
    response = client.get(url)
    assert response.status_code == 200
    assert response.text.startswith("<!doctype html>")
    assert '<nav class="navbar" id="nav"' in response.text
    current = re.findall(r'id="nav-(\w+)" href="[^"]*" aria-current="page"', response.text)
    assert len(current) == 1
    assert response.headers["vary"] == "HX-Request"


@pytest.mark.parametrize(
    ("url", "fragment_id"),
    [
        ("/", 'id="hardware-comparison"'),
        ("/comparison", 'id="family-heatmap"'),
        ("/runs", 'id="runs-table"'),
        ("/sql", 'id="sql-form-section"'),
        ("/reports", 'id="report-preview-title"'),
    ],
)
def test_htmx_requests_get_only_the_fragment(client, url, fragment_id):
    response = client.get(url, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert fragment_id in response.text
    assert "<html" not in response.text and 'id="nav"' not in response.text


def test_a_history_restore_gets_the_whole_page_even_from_htmx(client):
    response = client.get("/", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"})
    assert response.text.startswith("<!doctype html>")


def test_overview_filters_swap_the_charts_through_htmx_and_push_the_url(client):
    page = client.get("/").text
    form = re.search(r'<form[^>]*id="overview-filters"[^>]*>', page, re.S).group(0)
    assert 'hx-get="/"' in form and 'hx-target="#overview-body"' in form and 'hx-push-url="true"' in form
    for name in ("family", "model", "hardware", "batch_size", "precision", "sequence_length", "run", "runs", "metric"):
        assert f'id="filter-{name}" name="{name}"' in page
    assert 'data-vega-spec="chart-hardware-spec"' in page and 'data-vega-spec="chart-scaling-spec"' in page


def test_overview_charts_follow_the_chosen_filters_and_metric(client):
    fragment = client.get("/?family=bert&metric=latency_p50", headers={"HX-Request": "true"}).text
    hardware_spec = json.loads(re.search(r'id="chart-hardware-spec">(.*?)</script>', fragment, re.S).group(1))
    assert hardware_spec["description"] == "bert-tiny: Latency p50 (ms) by hardware (fp32 · seq 128)"
    values = next(iter(hardware_spec["datasets"].values()))
    assert sorted(row["value"] for row in values) == [10.0, 12.0, 16.0]
    top = re.search(
        r'<table class="top-models-table" data-hardware="cpu">(.*?)</table>', fragment, re.S
    ).group(1)
    assert "bert-tiny" in top and "gpt2-tiny" not in top


def test_clicking_a_column_header_sorts_on_the_server_and_swaps_only_the_table(client):
    link = parse(client.get("/comparison").text).by_id("sort-p50_latency_ms")
    assert (link.attrs["hx-target"], link.attrs["hx-push-url"]) == ("#results-table-section", "true")
    ascending = client.get(
        link.attrs["hx-get"], headers={"HX-Request": "true", "HX-Target": "results-table-section"}
    )
    fragment = parse(ascending.text)
    assert not fragment.find_all(id="family-heatmap") and not fragment.find_all(id="nav")
    table = fragment.by_id("results-table")
    latencies = [float(value) for value in column(table, "p50_latency_ms")]
    assert latencies == sorted(latencies) and len(latencies) == 6
    header = table.find_all("th", data_column="p50_latency_ms")[0]
    assert header.attrs["aria-sort"] == "ascending"
    # The header now offers the other direction.
    descending = client.get(
        fragment.by_id("sort-p50_latency_ms").attrs["hx-get"],
        headers={"HX-Request": "true", "HX-Target": "results-table-section"},
    )
    assert [
        float(v) for v in column(parse(descending.text).by_id("results-table"), "p50_latency_ms")
    ] == sorted(latencies, reverse=True)


def test_results_table_filters_and_pages(client):
    headers = {"HX-Request": "true", "HX-Target": "results-table-section"}
    fragment = parse(client.get("/comparison?family=bert", headers=headers).text)
    assert column(fragment.by_id("results-table"), "model_name") == ["bert-tiny"] * 3
    assert fragment.by_id("results-count").text() == "· 3 rows, the latest of each config"
    assert fragment.by_id("page-info").text() == "Page 1 of 1"
    assert fragment.by_id("page-next").attrs.get("aria-disabled") == "true"


def test_csv_export_holds_every_filtered_row(client):
    response = client.get("/comparison/results.csv?family=bert&sort=batch_size&direction=asc")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="benchboard-results.csv"' in response.headers["content-disposition"]
    table = pa_csv.read_csv(io.BytesIO(response.content))
    assert table.column("model_name").to_pylist() == ["bert-tiny"] * 3
    assert table.column("batch_size").to_pylist() == [1, 2, 4]


def test_parquet_export_holds_every_filtered_row(client):
    response = client.get("/comparison/results.parquet?model=gpt2-tiny")
    table = pq.read_table(io.BytesIO(response.content))
    assert sorted(table.column("batch_size").to_pylist()) == [1, 2]


def test_hostile_model_names_and_messages_are_shown_as_text(client):
    for url in ("/", "/comparison", "/runs/run-a"):
        page = client.get(url).text
        assert HOSTILE not in page, url
        assert "<b>evil</b>" not in page, url
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/comparison").text
    run_page = client.get("/runs/run-a").text
    assert "out of memory &lt;script&gt;" in run_page
    # Inside the JSON chart specs, "<" is escaped too, so no "</script>" can end the element early.
    overview = client.get("/?model=" + HOSTILE).text
    assert "\\u003cscript\\u003e" in overview


def test_sql_results_escape_hostile_values(client):
    token = csrf_token(client)
    page = client.post("/sql", data={"sql": f"SELECT '{HOSTILE}' AS name, 1 AS n", "_csrf_token": token}).text
    assert HOSTILE not in page and "&lt;script&gt;" in page


def test_a_form_post_without_the_csrf_token_is_refused(client):
    assert client.post("/runs", data={"priority": "high", "batch_sizes": "1"}).status_code == 403
    assert client.post("/sql", data={"sql": "SELECT 1"}).status_code == 403
    assert client.post("/runs/run-a/cancel").status_code == 403


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"batch_sizes": "1, x"}, "batch_sizes", "'x' is not a whole number"),
        ({"models": "no-such-model"}, "models", "unknown model"),
        ({"hardware": "cuda:7"}, "hardware", "not present on this machine"),
        ({"precision": "fp64"}, "precision", "must be one of"),
        # Bounds in plain words, not msgspec's ("Expected `int` <= 4096"), naming the element.
        ({"batch_sizes": "1, 8192"}, "batch_sizes", "must be at most 4096 (at batch_sizes[1])"),
        ({"batch_sizes": "0"}, "batch_sizes", "must be at least 1 (at batch_sizes[0])"),
        ({"sequence_length": "0"}, "sequence_length", "must be at least 1"),
    ],
)
def test_run_form_errors_are_shown_next_to_the_field(client, fields, field, reason):
    data = {
        "priority": "high",
        "hardware": "cpu",
        "batch_sizes": "1",
        "precision": "fp32",
        "sequence_length": "16",
        "_csrf_token": csrf_token(client),
    } | fields
    response = client.post("/runs", data=data, headers={"HX-Request": "true"})
    assert response.status_code == 422
    fragment = parse(response.text)
    assert fragment.children[0].attrs["id"] == "run-form-section"  # the form alone, swapped in place
    error = fragment.by_id(f"error-{field}")
    assert reason in error.text()
    # The message sits in the same field box as the control it is about.
    assert "has-error" in error.parent.attrs["class"]
    assert error.parent.find_all(name=field)
    assert len(fragment.find_all("p", class_="field-error")) == 1


def test_a_refused_run_form_asks_about_devices_off_the_event_loop(empty_client, monkeypatch):
    # A server's first question about devices waits for engine.hardware's probe process (issue
    # 16), up to its timeout: the refused form's page, which lists the devices, must not make
    # every other request wait for it.
    import asyncio

    import webapp.wiring.services as services_module

    asked_on_loop = []
    real_detect = services_module.detect_hardware

    def detect_hardware():
        try:
            asyncio.get_running_loop()
            asked_on_loop.append(True)
        except RuntimeError:  # no loop in this thread: a worker thread
            asked_on_loop.append(False)
        return real_detect()

    monkeypatch.setattr(services_module, "detect_hardware", detect_hardware)
    data = {"priority": "high", "hardware": "cpu", "batch_sizes": "1, x", "precision": "fp32",
            "sequence_length": "16", "_csrf_token": csrf_token(empty_client)}
    response = empty_client.post("/runs", data=data, headers={"HX-Request": "true"})
    assert response.status_code == 422 and 'name="hardware" value="cpu"' in response.text
    assert asked_on_loop and not any(asked_on_loop), asked_on_loop


def test_the_run_form_offers_detected_hardware_and_registered_models(client):
    page = client.get("/runs").text
    assert 'name="hardware" value="cpu" checked' in page
    assert 'name="models" value="bert-tiny"' in page and 'name="models" value="gpt2-tiny"' in page
    for name in ("priority", "batch_sizes", "precision", "progressive_mode", "incremental"):
        assert f'name="{name}"' in page
    assert 'hx-post="/runs"' in page and 'name="_csrf_token"' in page


def test_runs_list_shows_status_badges(client):
    page = client.get("/runs").text
    row = re.search(r'<tr id="run-row-run-a".*?</tr>', page, re.S).group(0)
    assert '<span class="badge status-completed">completed</span>' in row
    assert "7/7 (100%)" in row


def test_a_run_row_written_without_its_status_columns_is_listed_and_shown_not_a_500(empty_client):
    # Another writer than the server (a script's INSERT) leaves progress, elapsed_time and the
    # model counts NULL: they read back as schema v3's migration fills them in.
    with empty_client.app.state.services.db.writing() as cursor:
        cursor.execute(
            "INSERT INTO test_runs (run_id, status, priority, request, total_configs, completed_configs) "
            "VALUES ('bare-run', 'completed', 'high', ?, 4, 3)",
            [json.dumps({"models": ["bert-tiny"]})],
        )
    listed = empty_client.get("/runs")
    assert listed.status_code == 200
    row = re.search(r'<tr id="run-row-bare-run".*?</tr>', listed.text, re.S).group(0)
    assert "3/4 (75%)" in row
    shown = empty_client.get("/runs/bare-run")
    assert shown.status_code == 200 and 'aria-valuenow="75"' in shown.text
    assert empty_client.get("/api/benchmark/status/bare-run").json()["progress"] == 0.75


def test_a_run_row_without_its_request_says_so_on_every_page_instead_of_a_500(empty_client):
    # Another writer (an older tool's INSERT) stored the run without its request: the pages
    # list and show the run and say the request was not stored, rather than guess one.
    with empty_client.app.state.services.db.writing() as cursor:
        cursor.execute(
            "INSERT INTO test_runs (run_id, status, priority, progress, elapsed_time, request) "
            "VALUES ('no-request', 'completed', 'high', 1.0, 5.0, NULL)"
        )
    listed = empty_client.get("/runs")
    assert listed.status_code == 200
    row = re.search(r'<tr id="run-row-no-request".*?</tr>', listed.text, re.S).group(0)
    assert "request not stored" in row
    shown = empty_client.get("/runs/no-request")
    assert shown.status_code == 200 and 'id="run-request-missing"' in shown.text
    results = empty_client.get("/api/benchmark/results/no-request")
    assert results.status_code == 200 and results.json()["config"] is None
    picker = empty_client.get("/compare")
    assert picker.status_code == 200 and "request not stored" in picker.text


def test_a_finished_run_page_shows_its_rows_and_no_live_stream(client):
    page = client.get("/runs/run-a").text
    assert 'aria-valuenow="100"' in page
    assert len(re.findall(r'<tr class="run-row', page)) == 7  # 6 measured + 1 failed
    assert "sse-connect" not in page and 'id="cancel-form"' not in page


def test_a_running_run_page_subscribes_to_its_event_stream(client):
    save_run(
        client.app.state.services.db,
        stored_run("run-live", "running", total_configs=4, completed_configs=1, start_time=datetime.now()),
    )
    page = client.get("/runs/run-live").text
    assert 'hx-ext="sse" sse-connect="/runs/run-live/events?measured=0&amp;failed=0" sse-close="done"' in page
    assert 'sse-swap="status"' in page and 'sse-swap="result" hx-swap="beforeend"' in page
    assert 'aria-valuenow="25"' in page and 'id="cancel-form"' in page


def test_the_event_stream_sends_unseen_rows_then_the_status_then_done(client, monkeypatch):
    monkeypatch.setattr("webapp.pages.runs.CLOSE_GRACE_S", 0)  # the test client reads to the end
    # The page showed 4 of the 6 measured rows and none of the failed one.
    with client.stream("GET", "/runs/run-a/events?measured=4&failed=0") as stream:
        events, data = [], []
        for line in stream.iter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
            elif line.startswith("data: "):
                data.append(line)
            if events and events[-1] == "done":
                break
    assert events == ["result", "result", "result", "status", "done"]
    assert any('aria-valuenow="100"' in line for line in data)


def test_an_unknown_run_is_an_html_404(client):
    response = client.get("/runs/no-such-run")
    assert response.status_code == 404
    assert "no run with id" in response.text and response.text.startswith("<!doctype html>")
    assert client.get("/runs/no-such-run/events").status_code == 404


def test_an_unknown_metric_is_a_400_naming_the_field(client):
    response = client.get("/?metric=avg(model_name)")
    assert response.status_code == 400
    assert "metric: unknown metric" in response.text
    assert client.get("/comparison?sort=evil").status_code == 400
    assert client.get("/comparison?batch_size=two").status_code == 400


@pytest.mark.parametrize(("query", "reason"), [
    ("precision=fp64", "precision: must be one of fp32, fp16, bf16, int8, not &#39;fp64&#39;"),
    ("scenario=train", "scenario: must be one of forward, generate, not &#39;train&#39;"),
])
def test_a_filter_value_no_result_can_have_is_a_400_not_an_empty_table(client, query, reason):
    for page in ("/", "/comparison"):
        response = client.get(f"{page}?{query}")
        assert response.status_code == 400, page
        assert reason in response.text, page


def test_sql_page_runs_the_query_and_draws_a_chart(client):
    page = client.get("/sql").text
    assert "average throughput by model family and hardware" in page.lower()
    token = csrf_token(client)
    sql = (
        "SELECT model_family, avg(throughput_items_per_second) AS avg_throughput FROM results_view GROUP BY 1"
    )
    fragment = client.post(
        "/sql", data={"sql": sql, "_csrf_token": token}, headers={"HX-Request": "true"}
    ).text
    assert "<html" not in fragment
    # The table holds DuckDB's own answer, row for row; numbers carry their exact value in a title.
    expected = client.app.state.services.db.cursor().execute(sql + " ORDER BY 1").fetchall()
    table = parse(fragment).by_id("sql-table")
    assert [th.text() for th in table.find_all("th")] == ["model_family", "avg_throughput"]
    shown = sorted(
        (family.text(), float(value.find_all("span")[0].attrs["title"]))
        for family, value in (row.find_all("td") for row in table.find_all("tbody")[0].find_all("tr"))
    )
    assert [family for family, _ in shown] == [family for family, _ in expected] == sorted(["bert", "gpt2", "<b>evil</b>"])
    assert [value for _, value in shown] == pytest.approx([value for _, value in expected])
    # The chart draws the same rows: one bar per family at its average throughput, titled by column.
    spec = spec_of(fragment, "chart-sql")
    data = sorted((row["category"], row["value"]) for row in rows_of(spec))
    assert [family for family, _ in data] == [family for family, _ in shown]
    assert [value for _, value in data] == pytest.approx([value for _, value in shown])
    assert (spec["mark"]["type"], spec["encoding"]["x"]["title"], spec["encoding"]["y"]["title"]) == (
        "bar", "avg_throughput", "model_family")


def test_sql_page_shows_the_guards_refusal_inline(client):
    token = csrf_token(client)
    response = client.post(
        "/sql", data={"sql": "DROP TABLE models", "_csrf_token": token}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 400
    assert 'id="sql-refusal"' in response.text and "Refused:" in response.text
    assert client.app.state.services.db.cursor().execute("SELECT count(*) FROM models").fetchone()[0] == 3


def test_sql_csv_download_runs_through_the_guard(client):
    token = csrf_token(client)
    response = client.post(
        "/sql/results.csv",
        data={"sql": "SELECT model_name FROM models ORDER BY model_id", "_csrf_token": token},
    )
    assert response.text.splitlines() == ["model_name", "bert-tiny", "gpt2-tiny", HOSTILE]
    refused = client.post(
        "/sql/results.csv", data={"sql": "SELECT * FROM read_csv('/etc/passwd')", "_csrf_token": token}
    )
    assert refused.status_code == 400


NON_FINITE_SQL = (
    "SELECT * FROM (VALUES ('a', 'nan'::DOUBLE, 1.5), ('b', 'inf'::DOUBLE, 2.5), ('c', '-inf'::DOUBLE, NULL)) "
    "AS t(label, odd, plain) ORDER BY label"
)


def test_the_sql_page_shows_nan_and_infinities_as_such_not_as_empty_cells(client):
    token = csrf_token(client)
    fragment = client.post("/sql", data={"sql": NON_FINITE_SQL, "_csrf_token": token},
                           headers={"HX-Request": "true"}).text
    table = parse(fragment).by_id("sql-table")
    rows = [row.find_all("td") for row in table.find_all("tbody")[0].find_all("tr")]
    assert [cells[1].text() for cells in rows] == ["NaN", "Infinity", "-Infinity"]
    assert all("num" in cells[1].attrs.get("class", "") for cells in rows)  # aligned as numbers
    assert rows[2][2].text() == ""  # NULL stays an empty cell: the two are told apart
    # The chart takes them as no bar, as NULL, and still draws the finite column.
    bars = rows_of(spec_of(fragment, "chart-sql"))
    assert [(bar["category"], bar["value"]) for bar in bars] == [("a", 1.5), ("b", 2.5), ("c", None)]
    assert not any("group" in bar for bar in bars)  # odd is no text column to colour the bars by
    # JSON has neither: the downloads and the API spell them as strings, never null.
    expected = [["a", "NaN", 1.5], ["b", "Infinity", 2.5], ["c", "-Infinity", None]]
    answer = json.loads(client.post("/sql/results.json", data={"sql": NON_FINITE_SQL, "_csrf_token": token}).content)
    assert answer["rows"] == expected
    api = client.post("/api/benchmark/sql", json={"sql": NON_FINITE_SQL})
    assert api.status_code == 200 and api.json()["rows"] == expected
    csv_text = client.post("/sql/results.csv", data={"sql": NON_FINITE_SQL, "_csrf_token": token}).text
    assert csv_text.splitlines() == ["label,odd,plain", "a,NaN,1.5", "b,Infinity,2.5", "c,-Infinity,"]


def cross_join(tables: int) -> str:
    """Every column of performance_results, once per combination of ``tables`` of its rows."""
    names = [f"t{i}" for i in range(tables)]
    return f"SELECT {names[0]}.* FROM " + ", ".join(f"performance_results {name}" for name in names)


def test_the_sql_page_shows_at_most_PAGE_ROWS_rows_and_offers_the_full_download(client):
    from webapp.pages.sql import PAGE_ROWS

    services = client.app.state.services
    stored = services.db.cursor().execute("SELECT count(*) FROM performance_results").fetchone()[0]
    cap = services.settings.sql_row_cap
    token = csrf_token(client)

    # Under the row cap but over PAGE_ROWS: an HTMX fragment, as the form's Run gets it.
    sql = cross_join(4)
    returned = stored**4
    assert PAGE_ROWS < returned < cap
    fragment = client.post("/sql", data={"sql": sql, "_csrf_token": token}, headers={"HX-Request": "true"}).text
    assert "<html" not in fragment
    tree = parse(fragment)
    assert len(tree.by_id("sql-table").find_all("tbody")[0].find_all("tr")) == PAGE_ROWS
    assert fragment.count("<tr>") == PAGE_ROWS + 1  # the rows shown and the header's
    assert tree.by_id("sql-row-count").text().startswith(f"· {returned:,} rows in ")
    assert tree.by_id("sql-row-count").text().endswith(f"ms, the first {PAGE_ROWS:,} shown")
    notice = tree.by_id("sql-shown")
    assert notice.text().startswith(
        f"Only the first {PAGE_ROWS:,} of the {returned:,} rows the query returned are shown here. "
        f"The downloads hold all {returned:,}:")
    # Its buttons submit the result's download form (a plain POST form: no JavaScript needed).
    buttons = {button.attrs["id"]: button.attrs for button in notice.find_all("button")}
    assert buttons["sql-shown-csv"]["form"] == buttons["sql-shown-json"]["form"] == "sql-download"
    assert buttons["sql-shown-json"]["formaction"] == "/sql/results.json"
    assert tree.by_id("sql-download").attrs["action"] == "/sql/results.csv"
    assert tree.by_id("sql-shown-end").text() == (
        f"Rows 1 to {PAGE_ROWS:,} of {returned:,}; the rest are in the CSV and JSON downloads.")
    assert 'id="sql-truncated"' not in fragment
    # The download holds every row the query returned, not the page's first PAGE_ROWS.
    csv_rows = client.post("/sql/results.csv", data={"sql": sql, "_csrf_token": token}).text.splitlines()
    assert len(csv_rows) == returned + 1

    # Over the row cap: a full page from the URL. The cap's "Cut short" stays; the table still stops at PAGE_ROWS.
    sql = cross_join(6)
    assert stored**6 > cap
    page = client.get("/sql", params={"q": sql})
    assert page.status_code == 200 and "<html" in page.text
    tree = parse(page.text)
    assert len(tree.by_id("sql-table").find_all("tbody")[0].find_all("tr")) == PAGE_ROWS
    assert tree.by_id("sql-truncated").text() == (
        f"Cut short, {cap:,} rows returned: more than {cap:,} rows: only the first {cap:,} are returned.")
    assert tree.by_id("sql-shown").text().startswith(
        f"Only the first {PAGE_ROWS:,} of the {cap:,} rows returned are shown here. The downloads hold all {cap:,}:")
    assert len(page.text) < 2_000_000, len(page.text)  # 10,000 rows were 22 MB
    answer = json.loads(client.post("/sql/results.json", data={"sql": sql, "_csrf_token": token}).content)
    assert (len(answer["rows"]), answer["row_count"], answer["truncated"]) == (cap, cap, True)
    # The API keeps the cap too, with every capped row.
    api = client.post("/api/benchmark/sql", json={"sql": sql})
    assert api.status_code == 200, api.text
    assert len(api.json()["rows"]) == cap

    # A result that fits says nothing about rows not shown.
    small = client.post("/sql", data={"sql": cross_join(1), "_csrf_token": token}, headers={"HX-Request": "true"}).text
    assert len(parse(small).by_id("sql-table").find_all("tbody")[0].find_all("tr")) == stored
    assert 'id="sql-shown' not in small and "shown" not in parse(small).by_id("sql-row-count").text()


def test_reports_page_links_files_through_the_server_and_previews_the_html(client):
    page = client.get("/reports").text
    assert 'href="/api/benchmark/reports/run-a/report.md"' in page
    assert 'src="/api/benchmark/reports/run-a/report.html"' in page and 'sandbox="allow-scripts"' in page
    assert "file://" not in page
    report = client.get("/api/benchmark/reports/run-a/report.html")
    assert report.status_code == 200
    assert "bert-tiny" in report.text and "gpt2-tiny" in report.text  # the run's own rows
    assert HOSTILE not in report.text  # written escaped


@pytest.mark.parametrize("url", ["/", "/comparison", "/runs", "/reports"])
def test_empty_pages_explain_how_to_start_a_run(empty_client, url):
    page = empty_client.get(url).text
    assert "benchboard run" in page
    assert 'href="/runs' in page


def test_export_with_a_bad_sort_is_a_clear_400_not_an_empty_file(client):
    reply = client.get("/comparison/results.csv?sort=evil")
    assert reply.status_code == 400
    assert "cannot sort by" in reply.text


# ---- issue 14: like with like, and how far each number can be trusted ------------------------

import asyncio  # noqa: E402
import dataclasses  # noqa: E402
import time  # noqa: E402

import msgspec  # noqa: E402

from webapp.pages.live_runs import Submissions  # noqa: E402

# The realistic rerun: bert-tiny at batch sizes 1 and 2 on this machine's CPU, already measured.
RERUN = RunRequest(models=["bert-tiny"], hardware=["cpu"], batch_sizes=[1, 2], progressive_mode=False)
SAMPLES = [2.0 + (i % 8) * 0.25 for i in range(40)]  # 40 samples between 2.0 and 3.75 ms, in this order
ENVIRONMENT = {"cpu_model": "Test CPU", "threads": 2, "torch_version": "2.x"}


def measured(config, p50, **fields):
    """A result whose mean is its median, so its throughput's CI is the median's, inverted."""
    throughput = config.batch_size / p50 * 1000
    return Measurement.of(
        config, n_samples=fields.pop("n_samples", 10), average_latency_ms=p50, p50_latency_ms=p50,
        p99_latency_ms=p50 * 2, ci_low_ms=p50 * 0.98, ci_high_ms=p50 * 1.02, ci_met=True,
        throughput_items_per_second=throughput, throughput_ci_low_items_per_second=throughput / 1.02,
        throughput_ci_high_items_per_second=throughput / 0.98, memory_peak_mb=50.0, wall_seconds=1.5, **fields,
    )


@pytest.fixture(scope="module")
def trust_client(tmp_path_factory):
    """Two runs of bert-tiny at fp32 (the second one again at batch 1) and int8, one of them
    noisy; stored with this machine's real fingerprint, so a rerun reuses them. No worker starts."""
    tmp_path = tmp_path_factory.mktemp("trust")
    with TestClient(create_app(dataclasses.replace(settings(tmp_path), prestart_workers=False))) as test_client:
        services = test_client.app.state.services
        plan = services.plan(RERUN)
        fingerprint = plan.fingerprints["cpu"]
        bs1, bs2 = sorted(plan.configs, key=lambda config: config.batch_size)
        int8_bs1, int8_bs2 = (msgspec.structs.replace(config, precision="int8") for config in (bs1, bs2))
        store = result_store(services.db, model_description("bert-tiny", "bert"))
        for run_id in ("run-old", "run-new"):
            save_run(services.db, stored_run(run_id, request=RERUN, environment={"cpu": ENVIRONMENT},
                                             fingerprint=fingerprint, start_time=datetime(2024, 5, 1, 12),
                                             completion_time=datetime(2024, 5, 1, 12, 1)))
        store.record_result("run-old", measured(bs1, 10.0, samples_ms=SAMPLES, n_samples=len(SAMPLES)), fingerprint)
        store.record_result("run-old", measured(bs2, 12.0), fingerprint)
        store.record_result("run-new", measured(bs1, 8.0), fingerprint)
        store.record_result("run-new", measured(int8_bs1, 6.0), fingerprint)
        noisy = msgspec.structs.replace(
            measured(int8_bs2, 7.0), ci_met=False, ci_low_ms=2.0, ci_high_ms=40.0,
            throughput_ci_low_items_per_second=2 / 40.0 * 1000, throughput_ci_high_items_per_second=2 / 2.0 * 1000)
        store.record_result("run-new", noisy, fingerprint)
        yield test_client


def result_id(client, run_id, batch_size, precision="fp32") -> int:
    return client.app.state.services.db.cursor().execute(
        "SELECT result_id FROM results_view WHERE run_id = ? AND batch_size = ? AND precision = ?",
        [run_id, batch_size, precision],
    ).fetchone()[0]


def spec_of(html: str, chart_id: str) -> dict:
    return json.loads(re.search(rf'id="{chart_id}-spec">(.*?)</script>', html, re.S).group(1))


def rows_of(spec: dict) -> list[dict]:
    return spec["datasets"]["rows"]


def test_batch_scaling_draws_one_line_per_precision_never_one_across_them(trust_client):
    spec = spec_of(trust_client.get("/?model=bert-tiny", headers={"HX-Request": "true"}).text, "chart-scaling")
    rows = rows_of(spec)
    assert {row["series"] for row in rows} == {"bert-tiny · fp32 · seq 128", "bert-tiny · int8 · seq 128"}
    line = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "line")
    assert line["encoding"]["detail"]["field"] == "series"
    assert line["encoding"]["color"]["field"] == "series"
    # The latest result per config by default: batch 1 at fp32 is run-new's 8 ms alone.
    fp32_bs1 = next(row for row in rows if row["series"].endswith("fp32 · seq 128") and row["batch_size"] == 1)
    assert (fp32_bs1["n"], fp32_bs1["value"]) == (1, pytest.approx(1000 / 8.0))
    assert fp32_bs1["ci_low"] < fp32_bs1["value"] < fp32_bs1["ci_high"]


def test_all_runs_averages_a_config_and_says_over_how_many(trust_client):
    page = trust_client.get("/?model=bert-tiny&runs=all", headers={"HX-Request": "true"}).text
    rows = rows_of(spec_of(page, "chart-scaling"))
    fp32_bs1 = next(row for row in rows if "fp32" in row["series"] and row["batch_size"] == 1)
    assert fp32_bs1["n"] == 2
    assert fp32_bs1["value"] == pytest.approx((1000 / 10.0 + 1000 / 8.0) / 2)
    assert "Showing every run's results" in page


def test_the_hardware_chart_splits_mixed_precisions_into_series_and_counts_results(trust_client):
    spec = spec_of(trust_client.get("/?model=bert-tiny", headers={"HX-Request": "true"}).text, "chart-hardware")
    assert spec["encoding"]["xOffset"]["field"] == "group"
    bars = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "bar")
    assert bars["encoding"]["color"]["field"] == "series"
    assert sorted((row["series"], row["batch_size"], row["n"]) for row in rows_of(spec)) == [
        ("fp32 · seq 128", 1, 1), ("fp32 · seq 128", 2, 1), ("int8 · seq 128", 1, 1), ("int8 · seq 128", 2, 1),
    ]
    # Error bars from the CI: a rule layer from ci_low to ci_high.
    rule = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "rule")
    assert (rule["encoding"]["y"]["field"], rule["encoding"]["y2"]["field"]) == ("ci_low", "ci_high")


def test_the_heatmap_and_top_models_never_average_precisions_and_show_n(trust_client):
    page = trust_client.get("/comparison", headers={"HX-Request": "true"}).text
    cells = rows_of(spec_of(page, "chart-heatmap"))
    assert sorted((row["series"], row["n"], row["noisy"]) for row in cells) == [
        ("bert · fp32 · seq 128", 2, 0), ("bert · int8 · seq 128", 2, 1),
    ]
    overview = parse(trust_client.get("/").text)
    top = overview.find_all("table", class_="top-models-table")[0]
    headers = {th.text(): th.attrs.get("title") for th in top.find_all("th")}
    assert "95% CI" in headers and "Precision · seq" in headers
    # Its count is of the results the best was picked from, not timed samples: a heading of its own.
    assert "n" not in headers
    assert "picked from" in headers["Results"] and "not timed samples" in headers["Results"]
    series = [row.find_all("td")[2].text() for row in top.find_all("tbody")[0].find_all("tr")]
    assert sorted(series) == ["fp32 · seq 128", "int8 · seq 128"]


def test_a_heatmap_cell_of_several_results_says_it_is_their_mean_and_the_range_of_their_cis(trust_client):
    page = trust_client.get("/comparison").text
    tree = parse(page)
    # Every cell here averages two results, batch sizes 1 and 2: the heading and the note say so.
    assert "the mean of each cell's results" in tree.by_id("family-heatmap-title").text()
    note = tree.by_id("family-heatmap-note").text()
    assert "all the family's models and batch sizes" in note
    assert "not a confidence interval of the mean" in note
    assert tree.by_id("chart-heatmap-title").text() == (
        "Throughput (items/s) by model family and hardware, "
        "averaged over each family's models and batch sizes")
    data = tree.by_id("family-heatmap").find_all("details", class_="chart-data")[0]
    headers = [th.text() for th in data.find_all("th")]
    assert "95% CI, or range of CIs" in headers and "Results (n)" in headers
    assert "95% CI" not in headers and "n" not in headers
    for row in data.find_all("tbody")[0].find_all("tr"):
        assert "mean of 2 results" in row.text() and "range of 2 results' CIs" in row.text()
    # The chart's tooltip says the same, in words per cell; its numbers are the aggregate's own.
    spec = spec_of(page, "chart-heatmap")
    rect = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "rect")
    titles = {tip["field"]: tip["title"] for tip in rect["encoding"]["tooltip"]}
    assert (titles["value_is"], titles["interval"], titles["n"]) == ("Value is", "Interval", "Results (n)")
    assert "95% CI low" not in titles.values()
    for cell in rows_of(spec):
        assert cell["value_is"] == "the mean of 2 results"
        assert cell["interval"].endswith(", the range of their 2 results' 95% CIs")


def test_a_point_of_one_result_keeps_95_ci_and_a_point_of_several_says_mean_and_range(trust_client):
    latest = parse(trust_client.get("/?model=bert-tiny").text)
    data = latest.by_id("batch-scaling").find_all("details", class_="chart-data")[0]
    headers = [th.text() for th in data.find_all("th")]
    # The latest result per config: one result a point.
    assert "95% CI" in headers and "Results (n)" in headers
    assert "mean of" not in data.text() and "range of" not in data.text()
    assert "not a confidence interval of the mean" in latest.by_id("scope-note").text()

    every = trust_client.get("/?model=bert-tiny&runs=all").text
    data = parse(every).by_id("batch-scaling").find_all("details", class_="chart-data")[0]
    assert "95% CI, or range of CIs" in [th.text() for th in data.find_all("th")]
    rows = {row.find_all("td")[1].text() + " " + row.find_all("td")[0].text(): row.text()
            for row in data.find_all("tbody")[0].find_all("tr")}
    fp32_bs1, fp32_bs2 = rows["1 bert-tiny · fp32 · seq 128"], rows["2 bert-tiny · fp32 · seq 128"]
    # Batch 1 at fp32: run-old's result and run-new's.
    assert "mean of 2 results" in fp32_bs1 and "range of 2 results' CIs" in fp32_bs1
    assert "mean of" not in fp32_bs2 and "range of" not in fp32_bs2
    points = {(row["series"], row["batch_size"]): row for row in rows_of(spec_of(every, "chart-scaling"))}
    assert points[("bert-tiny · fp32 · seq 128", 1)]["value_is"] == "the mean of 2 results"
    assert points[("bert-tiny · fp32 · seq 128", 2)]["value_is"] == "a single result's"
    assert points[("bert-tiny · fp32 · seq 128", 2)]["interval"].endswith(", its 95% CI")


def test_peak_memory_says_it_is_above_the_loaded_model_and_n_that_it_counts_timed_samples(trust_client):
    table = parse(trust_client.get("/comparison").text).by_id("results-table")
    headers = {th.attrs["data-column"]: th for th in table.find_all("th")}
    assert headers["memory_peak_mb"].text() == "Peak memory above model (MB)"
    assert "above the loaded model" in headers["memory_peak_mb"].attrs["title"]
    assert headers["n_samples"].text() == "n" and "Timed samples" in headers["n_samples"].attrs["title"]
    run = parse(trust_client.get("/runs/run-new").text).by_id("run-results")
    memory = run.find_all("th", data_column="memory_peak_mb")[0]
    assert memory.text() == "Peak memory above model (MB)"
    assert "above the loaded model" in memory.attrs["title"]
    assert "Peak memory (MB)" not in run.text()
    statistics = parse(trust_client.get(f"/results/{result_id(trust_client, 'run-old', 1)}").text)
    row = statistics.by_id("statistics-table").find_all("tr", data_statistic="memory_peak_mb")[0]
    assert row.find_all("th")[0].text() == "Peak memory above the loaded model (MB)"


def test_a_noisy_result_shows_the_noisy_badge_not_ok(trust_client):
    noisy_id = result_id(trust_client, "run-new", 2, "int8")
    table = parse(trust_client.get("/comparison").text).by_id("results-table")
    for row in table.find_all("tbody")[0].find_all("tr"):
        trust = [element for element in row.iter() if element.attrs.get("data-trust")][0]
        if row.attrs["data-result-id"] == str(noisy_id):
            assert (trust.attrs["data-trust"], trust.text()) == ("noisy", "noisy")
            assert trust.attrs["href"] == f"/results/{noisy_id}"
        else:
            assert (trust.attrs["data-trust"], trust.text()) == ("ok", "OK")
    run_page = parse(trust_client.get("/runs/run-new").text)
    noisy_row = [row for row in run_page.find_all("tr") if row.attrs.get("data-result-id") == str(noisy_id)][0]
    assert "noisy" in noisy_row.text() and "OK" not in noisy_row.text()


def test_the_results_table_shows_sequence_length_ci_n_and_trust(trust_client):
    table = parse(trust_client.get("/comparison").text).by_id("results-table")
    headed = [th.attrs.get("data-column") for th in table.find_all("th")]
    for name in ("sequence_length", "ci_low_ms", "ci_high_ms", "n_samples", "ci_met", "run_id"):
        assert name in headed
    assert column(table, "sequence_length") == ["128"] * 4
    assert column(table, "n_samples") == ["10"] * 4  # run-old's batch-1 result (40 samples) is not the latest


@pytest.mark.parametrize(
    ("query", "rows"),
    [
        ("", 4),  # the latest result of each of the 4 configs
        ("runs=all", 5),
        ("precision=int8", 2),
        ("run=run-old&runs=all", 2),
        ("run=run-old", 2),
        ("sequence_length=128", 4),
        ("sequence_length=64", 0),
    ],
)
def test_filters_narrow_by_precision_sequence_length_and_run(trust_client, query, rows):
    page = parse(trust_client.get(f"/comparison?{query}", headers={"HX-Request": "true"}).text)
    count = page.by_id("results-count").text()
    assert count.startswith(f"· {rows} rows")


def test_a_bad_run_scope_is_a_400_naming_the_field(trust_client):
    response = trust_client.get("/?runs=some")
    assert response.status_code == 400 and "runs: must be one of latest, all" in response.text


def test_the_result_page_draws_the_stored_samples_with_every_statistic_and_the_environment(trust_client):
    rid = result_id(trust_client, "run-old", 1)
    response = trust_client.get(f"/results/{rid}")
    assert response.status_code == 200
    page = response.text
    bins = rows_of(spec_of(page, "chart-histogram"))
    assert sum(row["count"] for row in bins) == len(SAMPLES)
    assert bins[0]["bin_start"] == min(SAMPLES) and bins[-1]["bin_end"] == max(SAMPLES)
    for value in SAMPLES:  # every sample lies in a bin that counts it
        assert any(row["bin_start"] <= value <= row["bin_end"] and row["count"] for row in bins)
    trace = rows_of(spec_of(page, "chart-trace"))
    assert [row["latency_ms"] for row in trace] == SAMPLES
    assert [row["iteration"] for row in trace] == list(range(1, len(SAMPLES) + 1))
    tree = parse(page)
    stats = {row.attrs["data-statistic"]: row.find_all("td")[0].text() for row in tree.by_id("statistics-table").find_all("tr")}
    assert stats["n_samples"] == "40" and stats["p50_latency_ms"] == "10.0000"
    for name in ("ci_low_ms", "ci_high_ms", "ci_met", "p99_latency_ms", "throughput_items_per_second", "wall_seconds"):
        assert name in stats
    environment = tree.by_id("environment-table").text()
    assert "cpu_model Test CPU" in environment
    plan = trust_client.app.state.services.plan(RERUN)
    assert tree.by_id("result-fingerprint").text() == plan.fingerprints["cpu"]
    # The same config in another run, linked.
    other = result_id(trust_client, "run-new", 1)
    assert f'href="/results/{other}"' in str(page)
    assert [li.text() for li in tree.by_id("samples-list").find_all("li")] == [f"{value:.4f}" for value in SAMPLES]


def test_a_noisy_result_page_explains_and_offers_to_measure_it_again(trust_client):
    rid = result_id(trust_client, "run-new", 2, "int8")
    tree = parse(trust_client.get(f"/results/{rid}").text)
    assert "never tightened" in tree.by_id("noisy-explanation").text()
    form = tree.by_id("measure-again-form")
    fields = {element.attrs["name"]: element.attrs.get("value") for element in form.find_all("input")}
    assert (fields["models"], fields["hardware"], fields["batch_sizes"], fields["precision"], fields["force"]) == (
        "bert-tiny", "cpu", "2", "int8", "on")
    assert fields["submission"] and form.attrs["action"] == "/runs"


def test_an_unknown_result_is_an_html_404(trust_client):
    response = trust_client.get("/results/999999")
    assert response.status_code == 404 and response.text.startswith("<!doctype html>")


def test_the_samples_endpoint_serves_a_results_raw_samples_in_order(trust_client):
    rid = result_id(trust_client, "run-old", 1)
    reply = trust_client.get(f"/api/benchmark/results/run-old/samples/{rid}")
    assert reply.status_code == 200
    assert reply.json() == {"run_id": "run-old", "result_id": rid, "n_samples": 40, "samples_ms": SAMPLES}
    wrong_run = trust_client.get(f"/api/benchmark/results/run-new/samples/{rid}")
    assert wrong_run.status_code == 404 and "has no result" in wrong_run.json()["reason"]
    assert trust_client.get("/api/benchmark/results/run-old/samples/0").status_code == 400
    assert "getResultSamples" in trust_client.get("/schema/openapi.json").text


def test_results_view_carries_the_raw_samples(trust_client):
    rid = result_id(trust_client, "run-old", 1)
    reply = trust_client.post("/api/benchmark/sql", json={
        "sql": "SELECT len(samples_ms) AS n, samples_ms[1] AS first FROM results_view WHERE result_id = $id",
        "params": {"id": rid},
    })
    assert reply.status_code == 200, reply.text
    assert reply.json()["rows"] == [[40, SAMPLES[0]]]


def test_the_sql_page_runs_a_query_from_the_url_on_load(trust_client):
    page = trust_client.get("/sql", params={"q": "SELECT model_name, avg(p50_latency_ms) AS p50 FROM results_view GROUP BY 1"})
    assert page.status_code == 200
    tree = parse(page.text)
    assert tree.by_id("sql-input").text() == "SELECT model_name, avg(p50_latency_ms) AS p50 FROM results_view GROUP BY 1"
    assert [td.text() for td in tree.by_id("sql-table").find_all("td")] == ["bert-tiny", "8.6"]
    assert "Chart: p50 by model_name." in tree.by_id("chart-sql-title").text()
    form = re.search(r'<form id="sql-form"[^>]*>', page.text).group(0)
    assert 'method="get"' in form and 'hx-push-url="true"' in form
    refused = trust_client.get("/sql", params={"q": "DROP TABLE models"})
    assert refused.status_code == 400 and 'id="sql-refusal"' in refused.text


def test_the_run_form_groups_models_by_size_and_previews_the_run(trust_client):
    page = parse(trust_client.get("/runs").text)
    groups = [group.text() for group in page.find_all("p", class_="model-group-title")]
    assert groups == ["Tiny sizes (quick checks and tests)", "Full sizes"]
    tiny, full = page.find_all("div", class_="model-group")
    assert tiny.find_all("input", value="bert-tiny") and full.find_all("input", value="bert-base-uncased")
    assert page.by_id("model-search").attrs["type"] == "search"
    token = csrf_token(trust_client)
    form = {"priority": "high", "hardware": "cpu", "models": "bert-tiny", "batch_sizes": "1, 2, 4",
            "precision": "fp32", "sequence_length": "128", "incremental": "on", "_csrf_token": token}
    preview = parse(trust_client.post("/runs/preview", data=form, headers={"HX-Request": "true"}).text)
    text = preview.by_id("run-preview-text").text()
    assert preview.by_id("run-preview-configs").text() == "3 configs"
    assert "2 to be reused" in text and "1 never timed here: up to 10 s of timing each" in text
    bad = parse(trust_client.post("/runs/preview", data=form | {"batch_sizes": "1, x"}).text)
    assert bad.by_id("run-preview-text").text() == "Not valid yet: batch_sizes: 'x' is not a whole number"


def test_the_run_preview_counts_the_batch_sizes_the_run_measures(trust_client):
    """The run measures a batch size once however often it is written (its page says "batch
    sizes 1"); the preview said "× 3 batch sizes" for "1, 1, 1"."""
    form = {"priority": "high", "hardware": "cpu", "models": "bert-tiny", "batch_sizes": "1, 1, 1",
            "precision": "fp32", "sequence_length": "128", "_csrf_token": csrf_token(trust_client)}
    preview = parse(trust_client.post("/runs/preview", data=form, headers={"HX-Request": "true"}).text)
    assert preview.by_id("run-preview-configs").text() == "1 config"
    assert "(1 model × 1 hardware × 1 batch size)" in preview.by_id("run-preview-text").text()


def test_run_form_errors_are_tied_to_their_field_and_take_the_focus(trust_client):
    data = {"priority": "high", "hardware": "cpu", "batch_sizes": "1, x", "precision": "fp32",
            "sequence_length": "16", "_csrf_token": csrf_token(trust_client)}
    fragment = parse(trust_client.post("/runs", data=data, headers={"HX-Request": "true"}).text)
    field = fragment.by_id("run-batch-sizes")
    assert field.attrs["aria-invalid"] == "true" and "autofocus" in field.attrs
    assert "error-batch_sizes" in field.attrs["aria-describedby"].split()
    assert len(fragment.find_all(autofocus="")) == 1


def test_a_rerun_that_skips_every_config_lists_them_with_the_run_they_came_from(trust_client):
    """The same form sent twice (a double-click without JavaScript) starts one run; every config
    of it already has a result with this environment, so nothing is measured and no worker starts."""
    token = csrf_token(trust_client)
    form = {"priority": "high", "hardware": "cpu", "models": "bert-tiny", "batch_sizes": "1, 2", "precision": "fp32",
            "sequence_length": "128", "incremental": "on", "submission": "one-form", "_csrf_token": token}
    first = trust_client.post("/runs", data=form, follow_redirects=False)
    second = trust_client.post("/runs", data=form, follow_redirects=False)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    run_id = first.headers["location"].rsplit("/", 1)[1]
    services = trust_client.app.state.services
    deadline = time.monotonic() + 60  # generous: skipping two configs takes milliseconds
    while not services.run_status(run_id).terminal and time.monotonic() < deadline:
        time.sleep(0.05)
    assert services.run_status(run_id).status == "completed"
    assert [run.run_id for run in services.list_runs()].count(run_id) == 1
    page = parse(trust_client.get(f"/runs/{run_id}").text)
    rows = page.by_id("run-results-body").find_all("tr")
    reused = {row.find_all("td")[2].text(): row.text() for row in rows if row.attrs["data-outcome"] == "reused"}
    assert set(reused) == {"1", "2"}
    assert "from run run-new" in reused["1"] and "from run run-old" in reused["2"]
    assert "2 of 2 configs were not measured again" in page.by_id("run-skipped").text()
    # The API says the same: nothing measured, two results stood on, each naming its run.
    api = trust_client.get(f"/api/benchmark/results/{run_id}").json()
    assert api["results"] == [] and api["failures"] == []
    assert {(row["batch_size"], row["run_id"]) for row in api["reused"]} == {(1, "run-new"), (2, "run-old")}
    listed = parse(trust_client.get("/runs").text).by_id(f"run-row-{run_id}").text()
    assert "fp32" in listed and "128" in listed


def test_one_submission_token_starts_one_run_however_often_it_comes():
    async def scenario():
        submissions, started = Submissions(), []

        async def start():
            started.append(1)
            await asyncio.sleep(0.01)
            return f"run-{len(started)}"

        together = await asyncio.gather(*(submissions.start("token", start) for _ in range(5)))
        later = await submissions.start("token", start)
        other = await submissions.start("another", start)
        untokened = [await submissions.start("", start) for _ in range(2)]
        return together, later, other, untokened, len(started)

    together, later, other, untokened, calls = asyncio.run(scenario())
    assert together == ["run-1"] * 5 and later == "run-1"
    assert other == "run-2" and untokened == ["run-3", "run-4"] and calls == 4


def test_a_refused_submission_can_be_fixed_and_sent_again():
    async def scenario():
        submissions, attempts = Submissions(), []

        async def start():
            attempts.append(1)
            if len(attempts) == 1:
                raise ValueError("batch_sizes: enter at least one number")
            return "run-1"

        with pytest.raises(ValueError):
            await submissions.start("token", start)
        return await submissions.start("token", start)

    assert asyncio.run(scenario()) == "run-1"


def test_rows_stored_without_a_live_event_reach_the_stream(trust_client):
    """A progressive stop is stored, never published: the stream finds it with the next status."""
    from types import SimpleNamespace

    from engine.runs import RunState
    from webapp.pages.live_runs import estimate_remaining
    from webapp.pages.runs import stored_rows, unseen_rows

    services = trust_client.app.state.services
    plan = services.plan(RERUN)
    bs1, bs2 = sorted(plan.configs, key=lambda config: config.batch_size)
    save_run(services.db, stored_run("run-stopped", "running", request=RERUN, fingerprint="elsewhere"))
    store = result_store(services.db, model_description("bert-tiny", "bert"))
    store.record_result("run-stopped", measured(bs1, 5.0), "elsewhere")
    shown = {row["key"] for row in stored_rows(services, "run-stopped")[0]}
    store.record_progressive_stop("run-stopped", bs2, "stopped after batch size 1: throughput plateau")
    (row,) = unseen_rows(services, "run-stopped", shown)
    assert (row["outcome"], row["batch_size"]) == ("progressive_stop", 2)
    assert "throughput plateau" in row["error_message"]

    # The ETA of a live run: history's median wall time for each pending config (1.5 s each
    # here), or this run's mean where history knows nothing.
    live = RunState(request=RERUN, configs=list(plan.configs))
    live.status, live.measured_seconds, live.measured_configs = "running", 10.0, 1
    fake = SimpleNamespace(scheduler=SimpleNamespace(get=lambda run_id: live), db=services.db)
    assert estimate_remaining(fake, live.run_id) == pytest.approx(1.5 + 1.5)
    live.finished_keys = {bs1.key()}
    assert estimate_remaining(fake, live.run_id) == pytest.approx(1.5)
    live.request = msgspec.structs.replace(RERUN, incremental=True)
    live.fingerprints = {"cpu": plan.fingerprints["cpu"]}
    assert estimate_remaining(fake, live.run_id) == 0.0  # bs2 will be reused, not measured
    unknown = RunState(request=msgspec.structs.replace(RERUN, incremental=False),
                       configs=[msgspec.structs.replace(bs2, batch_size=64)])
    unknown.status = "running"
    fake.scheduler.get = lambda run_id: unknown
    assert estimate_remaining(fake, unknown.run_id) is None  # nothing measured yet, no history


def test_a_forced_run_says_so_where_an_incremental_one_says_incremental(client):
    services = client.app.state.services
    save_run(services.db, stored_run("run-forced", request=RunRequest(models=["bert-tiny"], force=True)))
    save_run(services.db, stored_run("run-incremental", request=RunRequest(models=["bert-tiny"])))
    forced = parse(client.get("/runs/run-forced").text).by_id("run-request").text()
    incremental = parse(client.get("/runs/run-incremental").text).by_id("run-request").text()
    assert "· forced re-measure" in forced and "incremental" not in forced
    assert "· incremental" in incremental and "forced" not in incremental
