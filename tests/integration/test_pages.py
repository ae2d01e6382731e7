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
    for name in ("family", "model", "hardware", "batch_size", "metric"):
        assert f'id="filter-{name}" name="{name}"' in page
    assert 'data-vega-spec="chart-hardware-spec"' in page and 'data-vega-spec="chart-scaling-spec"' in page


def test_overview_charts_follow_the_chosen_filters_and_metric(client):
    fragment = client.get("/?family=bert&metric=latency_p50", headers={"HX-Request": "true"}).text
    hardware_spec = json.loads(re.search(r'id="chart-hardware-spec">(.*?)</script>', fragment, re.S).group(1))
    assert hardware_spec["title"] == "bert-tiny: Latency p50 (ms) by hardware"
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
    assert fragment.by_id("results-count").text() == "· 3 rows"
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


def test_the_run_form_offers_detected_hardware_and_registered_models(client):
    page = client.get("/runs").text
    assert 'name="hardware" value="cpu" checked' in page
    assert '<option value="bert-tiny"' in page and '<option value="gpt2-tiny"' in page
    for name in ("priority", "batch_sizes", "precision", "progressive_mode", "incremental"):
        assert f'name="{name}"' in page
    assert 'hx-post="/runs"' in page and 'name="_csrf_token"' in page


def test_runs_list_shows_status_badges(client):
    page = client.get("/runs").text
    row = re.search(r'<tr id="run-row-run-a".*?</tr>', page, re.S).group(0)
    assert '<span class="badge status-completed">completed</span>' in row
    assert "7/7 (100%)" in row


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
    assert 'id="sql-table"' in fragment and 'data-vega-spec="chart-sql-spec"' in fragment
    assert "<html" not in fragment


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


def test_reports_page_links_files_through_the_server_and_previews_the_html(client):
    page = client.get("/reports").text
    assert 'href="/api/benchmark/reports/run-a/report.md"' in page
    assert 'src="/api/benchmark/reports/run-a/report.html"' in page and 'sandbox="allow-scripts"' in page
    assert "file://" not in page
    assert client.get("/api/benchmark/reports/run-a/report.html").status_code == 200


@pytest.mark.parametrize("url", ["/", "/comparison", "/runs", "/reports"])
def test_empty_pages_explain_how_to_start_a_run(empty_client, url):
    page = empty_client.get(url).text
    assert "benchboard run" in page
    assert 'href="/runs' in page


def test_export_with_a_bad_sort_is_a_clear_400_not_an_empty_file(client):
    reply = client.get("/comparison/results.csv?sort=evil")
    assert reply.status_code == 400
    assert "cannot sort by" in reply.text
