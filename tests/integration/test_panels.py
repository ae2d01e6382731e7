"""Custom tabs against real servers: a panels file's hostile queries are refused when the tab runs
them (the tab says why, the database is unchanged), bad files are skipped with a log line and a
notice, --token guards every change, the example tabs run, and export/import round-trips."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import httpx
from litestar.testing import TestClient

from storage.database import Database
from tests.integration.server import start_server
from webapp.app import create_app
from webapp.wiring.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
TABLES = (
    "models",
    "hardware_platforms",
    "test_runs",
    "performance_results",
    "hardware_compatibility",
    "dashboard_panels",
    "schema_version",
)

HOSTILE = """title = "Hostile"
[[panels]]
title = "Wipe the results"
sql = "DELETE FROM performance_results"

[[panels]]
title = "Read a file"
sql = "SELECT * FROM read_csv('/etc/passwd')"

[[panels]]
title = "Write a file"
sql = "COPY performance_results TO '{target}'"

[[panels]]
title = "Two statements"
sql = "SELECT 1; DROP TABLE models"

[[panels]]
title = "Other panels' SQL"
sql = "SELECT sql FROM dashboard_panels"

[[panels]]
title = "A setting"
sql = "SELECT current_setting('enable_external_access')"

[[panels]]
title = "A write hidden in a CTE"
sql = "WITH gone AS (DELETE FROM models RETURNING *) SELECT * FROM gone"
"""


def seed(path: Path) -> None:
    with Database(path) as db, db.writing() as cursor:
        cursor.execute(
            "INSERT INTO models (model_name, model_family) VALUES ('bert-tiny', 'bert'), ('gpt2-tiny', 'gpt2')"
        )
        cursor.execute(
            "INSERT INTO hardware_platforms (hardware_type, device_name, platform) VALUES ('cpu', 'CPU', 'cpu')"
        )
        cursor.execute(
            "INSERT INTO test_runs (run_id, status, priority) VALUES ('seeded', 'completed', 'high')"
        )
        for model_id in (1, 2):
            for batch_size in (1, 4):
                for precision, factor in (("fp32", 1.0), ("int8", 0.5)):
                    cursor.execute(
                        "INSERT INTO performance_results (run_id, model_id, hardware_id, batch_size, precision, "
                        "sequence_length, p50_latency_ms, ci_low_ms, ci_high_ms, ci_met, n_samples) "
                        "VALUES ('seeded', ?, 1, ?, ?, 128, ?, ?, ?, ?, 40)",
                        [
                            model_id,
                            batch_size,
                            precision,
                            model_id * batch_size * factor,
                            model_id * batch_size * factor * 0.9,
                            model_id * batch_size * factor * 1.2,
                            batch_size == 1,
                        ],
                    )
        cursor.execute("INSERT INTO dashboard_panels (tab, title, sql) VALUES ('Stored', 'kept', 'SELECT 1')")


def snapshot(path: Path) -> dict:
    with Database(path) as db:
        cursor = db.cursor()
        return {
            table: cursor.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() for table in TABLES
        } | {
            "catalog": cursor.execute(
                "SELECT table_name, column_count FROM duckdb_tables() ORDER BY ALL"
            ).fetchall()
        }


def test_a_hostile_panels_file_is_refused_when_its_tab_runs_and_the_database_is_unchanged(tmp_path):
    db_path = tmp_path / "benchmarks.duckdb"
    seed(db_path)
    target = tmp_path / "stolen.csv"
    (tmp_path / "panels").mkdir()
    (tmp_path / "panels" / "hostile.toml").write_text(HOSTILE.replace("{target}", str(target)))
    before = snapshot(db_path)

    with start_server(tmp_path, db_path=db_path, panels_dir=tmp_path / "panels") as server:
        listed = httpx.get(f"{server.url}/tabs", timeout=30)
        assert listed.status_code == 200 and 'href="/tabs/hostile"' in listed.text  # loading ran nothing
        page = httpx.get(f"{server.url}/tabs/hostile", timeout=30)
        assert page.status_code == 200
        refusals = re.findall(
            r'<div class="alert error panel-refusal" id="panel-(n\d)-refusal" role="alert">([^<]*)</div>',
            page.text,
        )
        assert [key for key, _ in refusals] == [f"n{i}" for i in range(7)]  # every panel, none ran
        said = {key: re.sub(r"&#3[49];|&quot;", "'", text) for key, text in refusals}
        assert said["n0"].startswith("Refused: DELETE is not allowed")
        assert "read_csv" in said["n1"] and said["n1"].startswith("Refused")
        assert said["n2"].startswith("Refused") and "COPY" in said["n2"]
        assert said["n3"].startswith("Refused") and "one statement" in said["n3"]
        assert "dashboard_panels" in said["n4"] and "allowlist" in said["n4"]
        assert "current_setting" in said["n5"]
        assert said["n6"].startswith("Refused")
        for key in said:  # and again, on its own: refused every time it runs
            again = httpx.get(f"{server.url}/tabs/hostile/panels/{key}", timeout=30)
            assert again.status_code == 200 and "panel-refusal" in again.text

    assert snapshot(db_path) == before
    assert not target.exists()


def test_a_bad_panels_file_is_skipped_with_a_log_line_and_a_notice_on_the_tab_list(tmp_path):
    (tmp_path / "panels").mkdir()
    (tmp_path / "panels" / "good.toml").write_text('[[panels]]\ntitle = "One"\nsql = "SELECT 1 AS one"\n')
    (tmp_path / "panels" / "broken.toml").write_text('[[panels]]\ntitle = "No SQL"\n')
    with client_for(tmp_path, panels_dir=str(tmp_path / "panels")) as client:
        listed = client.get("/tabs")
        assert listed.status_code == 200
        assert "broken.toml</code>: Object missing required field `sql`" in listed.text
        assert 'href="/tabs/good"' in listed.text
        assert 'id="nav-tab-good"' in client.get("/sql").text  # the good file's tab is in the navigation
        assert "1 panels file(s) could not be loaded" in client.get("/sql").text
    log = (tmp_path / "logs" / "benchmark_api_server.log").read_text()
    assert (
        f"skipping panels file {tmp_path / 'panels' / 'broken.toml'}: Object missing required field `sql`"
        in log
    )


def test_the_example_tabs_run_against_real_results(tmp_path):
    seed(tmp_path / "b.duckdb")
    with client_for(tmp_path, panels_dir=str(REPO_ROOT / "examples" / "panels")) as client:
        speedups = client.get("/tabs/precision-speedups")
        assert speedups.status_code == 200 and "panel-refusal" not in speedups.text
        assert 'id="param-hardware" name="hardware" value="cpu"' in speedups.text
        assert 'data-rows="4"' in speedups.text  # int8 against fp32: 2 models x 2 batch sizes
        assert 'id="panel-n0-spec"' in speedups.text and "chart-problem" not in speedups.text
        noisy = client.get("/tabs/noisy-results")
        assert noisy.status_code == 200 and "panel-refusal" not in noisy.text
        assert (
            noisy.text.count('data-rows="4"') == 2
        )  # batch size 4 never met its CI: 2 models x 2 precisions
        assert 'sse-connect="/tabs/noisy-results/events"' in noisy.text  # live panels


def client_for(tmp_path: Path, **settings) -> TestClient:
    values = {
        "db_path": str(tmp_path / "b.duckdb"),
        "results_dir": str(tmp_path / "results"),
        "log_dir": str(tmp_path / "logs"),
        "prestart_workers": False,
        "allowed_hosts": ["testserver.local"],
    } | settings  # the Host that Litestar's TestClient sends
    return TestClient(create_app(Settings(**values)))


def csrf(client: TestClient) -> str:
    client.get("/sql")
    return client.cookies["csrftoken"]


SAVE = {
    "tab": "Latency",
    "title": "Median latency",
    "chart": "bar",
    "x": "model_name",
    "y": "p50",
    "sql": "SELECT model_name, median(p50_latency_ms) AS p50 FROM results_view GROUP BY model_name",
}


def test_with_a_token_creating_editing_deleting_and_importing_panels_need_it(tmp_path):
    seed(tmp_path / "b.duckdb")
    with client_for(tmp_path, token="s3cret") as client:
        token = csrf(client)
        refused = client.post("/panels", data=SAVE | {"_csrf_token": token})
        assert refused.status_code == 401 and "/login?token=" in refused.text
        assert client.post("/panels/1", data=SAVE | {"_csrf_token": token}).status_code == 401
        assert client.post("/panels/1/delete", data={"_csrf_token": token}).status_code == 401
        assert (
            client.post(
                "/tabs/import",
                data={"_csrf_token": token},
                files={"files": ("t.toml", b'[[panels]]\ntitle="t"\nsql="SELECT 1"\n')},
            ).status_code
            == 401
        )
        assert (
            client.get("/tabs/stored/events").status_code == 401
        )  # the live stream, as the run pages' streams
        page = client.get("/tabs/stored")  # reading a tab needs no token, and offers no edit form
        assert (
            page.status_code == 200
            and "panel-p1-edit-form" not in page.text
            and "needs its token" in page.text
        )
        assert client.get("/tabs/stored").text.count("Refused") == 0

        assert client.get("/login?token=s3cret", follow_redirects=False).status_code in (302, 303, 307)
        saved = client.post("/panels", data=SAVE | {"_csrf_token": token}, follow_redirects=False)
        assert saved.status_code == 303 and saved.headers["location"] == "/tabs/latency"
        assert "panel-p2-edit-form" in client.get("/tabs/latency").text
        edited = client.post(
            "/panels/2",
            data=SAVE | {"title": "Renamed", "_csrf_token": token},
            headers={"HX-Request": "true"},
        )
        assert edited.status_code == 200 and "Renamed" in edited.text
        assert (
            client.post("/panels/2/delete", data={"_csrf_token": token}, follow_redirects=False).status_code
            == 303
        )
        assert client.get("/tabs/latency").status_code == 404


def test_saving_checks_the_query_and_the_chart_and_says_which_field_is_wrong(tmp_path):
    seed(tmp_path / "b.duckdb")
    (tmp_path / "panels").mkdir()
    (tmp_path / "panels" / "from-a-file.toml").write_text(
        '[[panels]]\ntitle = "One"\nsql = "SELECT 1 AS one"\n'
    )
    with client_for(tmp_path, panels_dir=str(tmp_path / "panels")) as client:
        token = csrf(client)

        def refused(**changes) -> tuple[str, str]:
            answer = client.post(
                "/panels", data=SAVE | changes | {"_csrf_token": token}, headers={"HX-Request": "true"}
            )
            assert answer.status_code == 400, answer.text
            (field,) = re.findall(r'id="panel-save-error" role="alert" data-field="([a-z_]*)"', answer.text)
            return field, answer.text

        assert refused(sql="SELECT * FROM read_csv('/etc/passwd')")[0] == "sql"
        assert refused(sql="SELECT nope FROM results_view")[0] == "sql"  # DuckDB refuses it: not saved either
        assert refused(y="no_such_column")[0] == "y"
        assert refused(y="")[0] == "y"  # a bar chart needs one
        assert refused(chart="pie")[0] == "chart"
        assert refused(refresh_s="1")[0] == "refresh_s"
        assert refused(refresh_s="soon")[0] == "refresh_s"
        assert refused(title=" ")[0] == "title"
        assert refused(tab="!!!")[0] == "tab"
        field, text = refused(tab="From a file")
        assert field == "tab" and "cannot be changed here" in text
        assert 'href="/tabs/latency"' not in client.get("/tabs").text  # nothing was saved

        edit = client.post("/panels", data=SAVE | {"_csrf_token": token}, follow_redirects=False)
        assert edit.status_code == 303
        stored_id = 2  # the seeded database holds panel 1
        answer = client.post(
            f"/panels/{stored_id}",
            data=SAVE | {"sql": "DROP TABLE models", "_csrf_token": token},
            headers={"HX-Request": "true"},
        )
        assert answer.status_code == 400 and "Refused: DROP is not allowed" in answer.text
        assert 'data-rows="2"' in answer.text  # the panel as stored, still running
        answer = client.post(
            f"/panels/{stored_id}",
            data=SAVE | {"params": "nope = 1", "_csrf_token": token},
            headers={"HX-Request": "true"},
        )
        assert answer.status_code == 400 and "parameter $nope is not used by the query" in answer.text


def test_a_stored_tab_exported_as_toml_imports_on_another_server_and_serves_from_a_folder(tmp_path):
    (tmp_path / "one").mkdir()
    seed(tmp_path / "one" / "b.duckdb")
    with client_for(tmp_path / "one") as one:
        token = csrf(one)
        one.post("/panels", data=SAVE | {"tab": "Team tab", "_csrf_token": token})
        one.post(
            "/panels",
            data=SAVE
            | {
                "tab": "Team tab",
                "title": "Per model",
                "chart": "table",
                "x": "",
                "y": "",
                "sql": "SELECT model_name FROM results_view WHERE batch_size = $bs",
                "_csrf_token": token,
            },
        )
        exported = one.get("/tabs/team-tab/export.toml")
    assert (
        exported.status_code == 200 and 'filename="team-tab.toml"' in exported.headers["content-disposition"]
    )
    toml = exported.text
    assert 'title = "Team tab"' in toml and toml.count("[[panels]]") == 2

    (tmp_path / "two").mkdir()
    seed(tmp_path / "two" / "b.duckdb")
    with client_for(tmp_path / "two") as two:
        token = csrf(two)
        for _ in range(2):  # importing again replaces the tab: the same two panels
            imported = two.post(
                "/tabs/import",
                data={"_csrf_token": token},
                files={"files": ("team-tab.toml", toml.encode())},
                follow_redirects=False,
            )
            assert imported.status_code == 303, imported.text
        page = two.get("/tabs/team-tab?bs=4")
        assert page.text.count('class="card tab-panel"') == 2
        assert 'id="param-bs" name="bs" value="4"' in page.text
        assert two.get("/tabs/team-tab/export.toml").text == toml

        hostile = toml.replace(
            "SELECT model_name FROM results_view WHERE batch_size = $bs", "DELETE FROM models"
        )
        refused = two.post(
            "/tabs/import", data={"_csrf_token": token}, files={"files": ("x.toml", hostile.encode())}
        )
        assert refused.status_code == 400 and "Refused: DELETE is not allowed" in refused.text

    (tmp_path / "three" / "panels").mkdir(parents=True)
    (tmp_path / "three" / "panels" / "team-tab.toml").write_text(toml)
    seed(tmp_path / "three" / "b.duckdb")
    with client_for(tmp_path / "three", panels_dir=str(tmp_path / "three" / "panels")) as three:
        page = three.get("/tabs/team-tab")
        assert page.status_code == 200 and "From the panels file" in page.text
        assert page.text.count('class="card tab-panel"') == 2 and "panel-refusal" not in page.text


LIVE_TAB = """title = "Live"
[[panels]]
title = "Results so far"
chart = "table"
refresh_s = 5
sql = "SELECT count(*) AS results FROM performance_results"
"""


def test_a_live_panel_is_sent_again_over_sse_when_a_result_lands(tmp_path):
    """A real run of a tiny model: its result, published on the runs channel, re-runs the live
    panel, whose new HTML arrives on the tab's event stream."""
    (tmp_path / "panels").mkdir()
    (tmp_path / "panels" / "live.toml").write_text(LIVE_TAB)
    events: list[tuple[str, str]] = []
    # A prestarted worker: the run below does not wait for its imports.
    with start_server(tmp_path, panels_dir=tmp_path / "panels", prestart_workers=True) as server:
        connected = threading.Event()

        def follow() -> None:
            # Generous: the worker imports torch and builds the model on a loaded machine.
            with httpx.stream(
                "GET", f"{server.url}/tabs/live/events", timeout=httpx.Timeout(240.0)
            ) as stream:
                connected.set()
                event = None
                for line in stream.iter_lines():
                    if line.startswith("event:"):
                        event = line.partition(":")[2].strip()
                    elif line.startswith("data:") and event:
                        events.append((event, line.partition(":")[2]))
                        if '<td class="num">1</td>' in line:
                            return

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        assert connected.wait(30)
        # The stream is open before the run starts: its worker takes seconds before any result.
        reply = httpx.post(
            f"{server.url}/api/benchmark/run",
            timeout=30,
            json={"models": ["bert-tiny"], "batch_sizes": [1], "progressive_mode": False, "force": True},
        )
        assert reply.status_code == 202, reply.text
        run_id = reply.json()["run_id"]
        reader.join(timeout=240)
        status = httpx.get(f"{server.url}/api/benchmark/status/{run_id}", timeout=30).json()
    assert not reader.is_alive(), f"no live update arrived; run status: {json.dumps(status)}"
    assert {event for event, _ in events} == {"panel-n0"}
    assert any('<td class="num">1</td>' in data for _, data in events)
