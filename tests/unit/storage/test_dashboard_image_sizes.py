"""A vision model measured at two image sizes is two configs: no aggregate of the dashboard
averages them together, and every label names the image size (QA: vit-tiny at 32 and 64
pixels showed as one point, "mean of 2 results", labelled "seq 128")."""

import msgspec
import pytest

from descriptions import CPU, model_description
from engine.config import BenchmarkConfig
from engine.result import Measurement
from storage.dashboard import (
    METRICS,
    Filters,
    batch_scaling,
    family_heatmap,
    hardware_comparison,
    result_detail,
    results_page,
    top_models,
)
from storage.database import Database
from storage.results import insert_results
from webapp.pages.results import StoredResult

THROUGHPUT = METRICS["throughput"]
VIT = model_description("vit-tiny", "vit", modality="vision")
BERT = model_description("bert-tiny", "bert")


def measured(model, p50, *, image_size=None, batch_size=1, run_id="run-1"):
    config = BenchmarkConfig(model_name=model.name, hardware="cpu", batch_size=batch_size, image_size=image_size)
    measurement = Measurement.of(
        config, n_samples=10, p50_latency_ms=p50, ci_low_ms=p50 * 0.9, ci_high_ms=p50 * 1.1, ci_met=True,
        throughput_items_per_second=batch_size / p50 * 1000,
    )
    return {**msgspec.structs.asdict(measurement), "model": model, "hardware": CPU, "run_id": run_id,
            "config_key": config.key(), "fingerprint": "fp"}


@pytest.fixture
def db(tmp_path):
    """vit-tiny at batch 1 with 32-pixel images (about 140/s) and with 64-pixel ones (about
    665/s, in a later run), and bert-tiny, which takes no image."""
    database = Database(tmp_path / "images.duckdb")
    insert_results(database, [measured(VIT, 1000 / 140, image_size=32, run_id="run-1"),
                              measured(BERT, 5.0, run_id="run-1")])
    insert_results(database, [measured(VIT, 1000 / 665, image_size=64, run_id="run-2")])
    yield database
    database.close()


def test_the_hardware_comparison_keeps_each_image_size_a_bar_of_its_own(db):
    df = hardware_comparison(db, Filters(model="vit-tiny", latest_only=True), THROUGHPUT)
    assert sorted(zip(df.series, df.image_size, df.n, df.value.round(), strict=True)) == [
        ("fp32 · img32", 32, 1, 140.0),
        ("fp32 · img64", 64, 1, 665.0),
    ]


def test_batch_scaling_draws_a_line_per_image_size_and_a_text_model_keeps_its_sequence_length(db):
    df = batch_scaling(db, Filters(latest_only=True), THROUGHPUT)
    assert sorted(zip(df.series, df.n, strict=True)) == [
        ("bert-tiny · fp32 · seq 128", 1), ("vit-tiny · fp32 · img32", 1), ("vit-tiny · fp32 · img64", 1),
    ]


def test_top_models_rank_each_image_size_apart(db):
    df = top_models(db, Filters(), THROUGHPUT)
    assert list(zip(df.model_name, df.series, df.n, strict=True)) == [
        ("vit-tiny", "fp32 · img64", 1), ("bert-tiny", "fp32 · seq 128", 1), ("vit-tiny", "fp32 · img32", 1),
    ]


def test_the_heatmap_keeps_image_sizes_in_cells_of_their_own(db):
    df = family_heatmap(db, Filters(family="vit"), THROUGHPUT)
    assert sorted(zip(df.series, df.n, strict=True)) == [("vit · fp32 · img32", 1), ("vit · fp32 · img64", 1)]


def test_results_rows_carry_the_image_size_and_sort_by_it(db):
    page = results_page(db, Filters(), sort="image_size", direction="desc")
    assert [(row["model_name"], row["image_size"]) for row in page.rows] == [
        ("vit-tiny", 64), ("vit-tiny", 32), ("bert-tiny", None),
    ]


def test_the_result_page_reads_the_image_size(db):
    vit = results_page(db, Filters(model="vit-tiny"), sort="image_size").rows[0]
    assert result_detail(db, vit["result_id"], StoredResult).image_size == 32
