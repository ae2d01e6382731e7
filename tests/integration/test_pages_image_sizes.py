"""The overview, comparison and result pages of a vision model measured at two image sizes
(QA: vit-tiny at 32 and 64 pixels read as one config, "seq 128"), and the overview's summary
strip, which counts what the filters keep. Rows are stored directly: nothing measures."""

import re

import pytest
from litestar.datastructures import FormMultiDict
from litestar.testing import TestClient

from descriptions import model_description, result_store, stored_run
from engine.config import BenchmarkConfig
from engine.result import Measurement
from storage.runs import save_run
from tests.integration.test_pages import column, parse, rows_of, settings, spec_of
from webapp.app import create_app
from webapp.pages.runs import form_request, submitted_values

VIT = model_description("vit-tiny", "vit", modality="vision")
BERT = model_description("bert-tiny", "bert")


def measured(model, p50, *, image_size=None, precision="fp32", ci_met=True):
    config = BenchmarkConfig(model_name=model.name, hardware="cpu", batch_size=1, precision=precision,
                             image_size=image_size)
    return Measurement.of(config, n_samples=10, p50_latency_ms=p50, ci_low_ms=p50 * 0.9, ci_high_ms=p50 * 1.1,
                          ci_met=ci_met, throughput_items_per_second=1000 / p50)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """vit-tiny at 32 pixels (run-1, then measured again in run-2) and at 64 (run-3); bert-tiny
    at fp32 and at int8, which is noisy (run-1)."""
    with TestClient(create_app(settings(tmp_path_factory.mktemp("images")))) as test_client:
        db = test_client.app.state.services.db
        store = result_store(db, VIT, BERT)
        for run_id in ("run-1", "run-2", "run-3"):
            save_run(db, stored_run(run_id))
        store.record_result("run-1", measured(VIT, 1000 / 130, image_size=32), "fp")
        store.record_result("run-1", measured(BERT, 5.0), "fp")
        store.record_result("run-1", measured(BERT, 4.0, precision="int8", ci_met=False), "fp")
        store.record_result("run-2", measured(VIT, 1000 / 140, image_size=32), "fp")
        store.record_result("run-3", measured(VIT, 1000 / 665, image_size=64), "fp")
        yield test_client


def fragment(client, url: str) -> str:
    response = client.get(url, headers={"HX-Request": "true"})
    assert response.status_code == 200, response.text
    return response.text


def test_the_overview_draws_each_image_size_apart_and_names_it(client):
    body = fragment(client, "/?model=vit-tiny")
    bars = rows_of(spec_of(body, "chart-hardware"))
    assert sorted((row["series"], row["n"], round(row["value"])) for row in bars) == [
        ("fp32 · img32", 1, 140), ("fp32 · img64", 1, 665),
    ]
    lines = {row["series"] for row in rows_of(spec_of(body, "chart-scaling"))}
    assert lines == {"vit-tiny · fp32 · img32", "vit-tiny · fp32 · img64"}
    top = parse(body).find_all("table", class_="top-models-table")[0]
    assert [row.find_all("td")[2].text() for row in top.find_all("tbody")[0].find_all("tr")] == [
        "fp32 · img64", "fp32 · img32",
    ]
    assert "seq 128" not in body


def test_the_heatmap_has_a_cell_per_image_size_and_the_table_an_image_size_column(client):
    body = fragment(client, "/comparison?family=vit")
    cells = rows_of(spec_of(body, "chart-heatmap"))
    assert sorted((row["series"], row["n"]) for row in cells) == [("vit · fp32 · img32", 1), ("vit · fp32 · img64", 1)]
    table = parse(body).by_id("results-table")
    assert sorted(column(table, "image_size")) == ["32", "64"]


def test_the_result_page_names_a_vision_results_image_size_not_a_sequence_length(client):
    result_id = client.app.state.services.db.cursor().execute(
        "SELECT result_id FROM results_view WHERE image_size = 64").fetchone()[0]
    config = parse(client.get(f"/results/{result_id}").text).by_id("result-config").text()
    assert config.startswith("batch 1 · fp32 · img64") and "seq" not in config


def test_measure_again_on_a_vision_result_asks_for_its_image_size(client):
    result_id = client.app.state.services.db.cursor().execute(
        "SELECT result_id FROM results_view WHERE image_size = 64").fetchone()[0]
    form = parse(client.get(f"/results/{result_id}").text).by_id("measure-again-form")
    fields = FormMultiDict([(field.attrs["name"], field.attrs.get("value") or "") for field in form.find_all("input")])
    request = form_request(submitted_values(fields))
    assert (request.models, request.batch_sizes, request.image_size, request.timing) == (
        ["vit-tiny"], [1], 64, "latency")


@pytest.mark.parametrize(
    ("query", "counts"),
    [
        # results, runs, noisy: the latest of each of the 4 configs, from 3 runs
        ("", ("4 results", "3 runs", "1 noisy result")),
        ("runs=all", ("5 results", "3 runs", "1 noisy result")),
        ("precision=int8", ("1 result", "1 run", "1 noisy result")),
        ("model=vit-tiny", ("2 results", "2 runs", None)),
        ("run=zzz", ("0 results", "0 runs", None)),
    ],
)
def test_the_summary_strip_counts_what_the_filters_keep_beside_the_stored_totals(client, query, counts):
    body = fragment(client, f"/?{query}")

    def item(item_id: str) -> str | None:
        """The strip's item ``item_id`` as it reads, or None where it is left out."""
        found = re.search(rf'<li[^>]* id="{item_id}">(.*?)</li>', body, re.S)
        return found and " ".join(re.sub(r"<[^>]+>", "", found.group(1)).split())

    results, runs, noisy = counts
    assert item("overview-results").startswith(results)
    assert (item("overview-runs"), item("overview-noisy")) == (runs, noisy)
    assert item("overview-stored") == "of 5 results from 3 runs stored"
