import msgspec
import pyarrow as pa
import pytest

from descriptions import CPU, hardware_description, model_description
from engine.config import BenchmarkConfig
from engine.result import Measurement
from storage.dashboard import (
    METRICS,
    FilterOptions,
    Filters,
    InvalidFilter,
    batch_scaling,
    family_heatmap,
    filter_options,
    get_metric,
    hardware_comparison,
    most_measured_model,
    results_export,
    results_page,
    summary,
    top_models,
)
from storage.database import Database
from storage.results import insert_results

THROUGHPUT = METRICS["throughput"]
LATENCY = METRICS["latency_p50"]


BERT = model_description("bert-tiny", "bert")
ROBERTA = model_description("roberta-tiny", "roberta")
GPT2 = model_description("gpt2-tiny", "gpt2")
GPU = hardware_description("cuda:0", "cuda", "Test GPU")


def row(model, hardware, batch_size, p50, precision="fp32", memory=100.0):
    config = BenchmarkConfig(model_name=model.name, hardware=hardware.name, batch_size=batch_size, precision=precision)
    measurement = Measurement.of(
        config,
        average_latency_ms=p50,
        p50_latency_ms=p50,
        p99_latency_ms=p50 * 1.5,
        throughput_items_per_second=batch_size / p50 * 1000,
        memory_peak_mb=memory,
    )
    return {
        **msgspec.structs.asdict(measurement),
        "model": model,
        "hardware": hardware,
        "run_id": "run-1",
        "config_key": config.key(),
        "fingerprint": "fp",
    }


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "dash.duckdb")
    insert_results(
        database,
        [
            row(BERT, CPU, 1, 10.0),
            row(BERT, CPU, 8, 40.0),
            row(BERT, GPU, 1, 2.0),
            row(BERT, GPU, 8, 4.0),
            row(BERT, CPU, 1, 12.0),  # a second measurement of the same config: averaged
            row(ROBERTA, CPU, 1, 20.0),
            row(ROBERTA, CPU, 8, 100.0),
            row(GPT2, CPU, 1, 5.0, precision="int8", memory=50.0),
        ],
    )
    yield database
    database.close()


def test_hardware_comparison_averages_one_model_per_hardware_and_batch_size(db):
    df = hardware_comparison(db, Filters(model="bert-tiny"), LATENCY)
    assert list(zip(df.hardware, df.batch_size, df.value, df.n, strict=True)) == [
        ("cpu", 1, 11.0, 2),
        ("cpu", 8, 40.0, 1),
        ("cuda:0", 1, 2.0, 1),
        ("cuda:0", 8, 4.0, 1),
    ]
    assert set(df.device_name) == {"Test CPU", "Test GPU"}


def test_hardware_comparison_ignores_the_hardware_filter_and_defaults_to_the_most_measured_model(db):
    assert most_measured_model(db, Filters()) == "bert-tiny"
    df = hardware_comparison(db, Filters(hardware="cpu", batch_size=8), THROUGHPUT)
    assert set(df.model_name) == {"bert-tiny"}
    assert list(df.hardware) == ["cpu", "cuda:0"]
    assert list(df.value) == pytest.approx([200.0, 2000.0])


def test_hardware_comparison_of_nothing_is_an_empty_frame(db):
    assert hardware_comparison(db, Filters(family="no-such-family"), THROUGHPUT).empty


def test_top_models_ranks_best_values_per_hardware_in_the_metrics_direction(db):
    fastest = top_models(db, Filters(), THROUGHPUT, limit=2)
    cpu = fastest[fastest.hardware == "cpu"]
    assert list(cpu.model_name) == ["bert-tiny", "gpt2-tiny"]  # 200/s at batch 8, then 200/s at batch 1
    assert list(cpu["rank"]) == [1, 2]
    assert list(cpu.batch_size) == [8, 1]
    lowest_latency = top_models(db, Filters(hardware="cpu"), LATENCY, limit=3)
    assert list(lowest_latency.model_name) == ["gpt2-tiny", "bert-tiny", "roberta-tiny"]
    assert list(lowest_latency.value) == [5.0, 10.0, 20.0]


def test_batch_scaling_ignores_the_batch_filter_and_keeps_the_best_models(db):
    df = batch_scaling(db, Filters(hardware="cpu", batch_size=1, precision="fp32"), THROUGHPUT)
    assert list(zip(df.model_name, df.batch_size, strict=True)) == [
        ("bert-tiny", 1),
        ("bert-tiny", 8),
        ("roberta-tiny", 1),
        ("roberta-tiny", 8),
    ]
    only_best = batch_scaling(db, Filters(hardware="cpu"), THROUGHPUT, max_models=1)
    assert set(only_best.model_name) == {"bert-tiny"}


def test_batch_scaling_defaults_to_the_most_measured_hardware(db):
    assert set(batch_scaling(db, Filters(), THROUGHPUT).hardware) == {"cpu"}


def test_family_heatmap_has_one_cell_per_family_and_hardware(db):
    df = family_heatmap(db, Filters(precision="fp32"), METRICS["memory"])
    assert list(zip(df.model_family, df.hardware, df.n, strict=True)) == [
        ("bert", "cpu", 3),
        ("bert", "cuda:0", 2),
        ("roberta", "cpu", 2),
    ]
    assert list(df.value) == [100.0, 100.0, 100.0]


def test_results_page_sorts_filters_and_pages_on_the_server(db):
    first = results_page(
        db, Filters(hardware="cpu"), sort="p50_latency_ms", direction="asc", page=1, page_size=2
    )
    assert (first.total, first.pages) == (6, 3)
    assert [r["p50_latency_ms"] for r in first.rows] == [5.0, 10.0]
    third = results_page(
        db, Filters(hardware="cpu"), sort="p50_latency_ms", direction="desc", page=3, page_size=2
    )
    assert [r["p50_latency_ms"] for r in third.rows] == [10.0, 5.0]
    assert set(first.rows[0]) >= {"result_id", "run_id", "model_name", "throughput_items_per_second"}


def test_a_page_past_the_end_shows_the_last_page(db):
    page = results_page(db, Filters(family="bert"), page=99, page_size=2)
    assert (page.page, page.pages, len(page.rows)) == (3, 3, 1)


def test_an_empty_result_set_is_one_empty_page(db):
    page = results_page(db, Filters(model="nothing"))
    assert (page.total, page.page, page.pages, page.rows) == (0, 1, 1, [])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sort": "model_name; DROP TABLE models"}, "sort"),
        ({"direction": "sideways"}, "direction"),
        ({"page": 0}, "page"),
        ({"page_size": 100_000}, "page_size"),
    ],
)
def test_sort_and_paging_values_outside_the_allowlist_are_refused_by_field(db, kwargs, field):
    with pytest.raises(InvalidFilter) as refused:
        results_page(db, Filters(), **kwargs)
    assert refused.value.field == field


def test_unknown_metrics_are_refused_with_the_choices():
    with pytest.raises(InvalidFilter, match="throughput") as refused:
        get_metric("avg(model_name)")
    assert refused.value.field == "metric"
    assert get_metric(None) is THROUGHPUT


def test_filter_values_are_parameters_not_sql(db):
    hostile = "cpu' OR '1'='1"
    assert results_page(db, Filters(hardware=hostile)).total == 0
    assert family_heatmap(db, Filters(family=hostile), THROUGHPUT).empty


def test_export_streams_every_filtered_row_in_table_order(db):
    reader = results_export(
        db, Filters(family="bert"), sort="p50_latency_ms", direction="asc", rows_per_batch=2
    )
    table = pa.Table.from_batches(list(reader))
    assert table.num_rows == 5
    assert table.column("p50_latency_ms").to_pylist() == [2.0, 4.0, 10.0, 12.0, 40.0]
    assert "samples_ms" not in table.column_names


def test_filter_options_list_known_models_and_hardware_and_measured_sizes(db):
    options = filter_options(db)
    assert options.families == ["bert", "gpt2", "roberta"]
    assert options.models == ["bert-tiny", "gpt2-tiny", "roberta-tiny"]
    assert options.hardware == ["cpu", "cuda:0"]
    assert options.batch_sizes == [1, 8]
    assert options.precisions == ["fp32", "int8"]


def test_summary_counts_results_models_and_hardware(db):
    counts = summary(db)
    assert (counts.results, counts.models, counts.hardware, counts.runs, counts.failures) == (8, 3, 2, 0, 0)


def test_an_empty_database_has_no_options_and_zero_counts(tmp_path):
    with Database(tmp_path / "empty.duckdb") as empty:
        assert filter_options(empty) == FilterOptions()
        assert summary(empty).results == 0
        assert top_models(empty, Filters(), THROUGHPUT).empty
        assert batch_scaling(empty, Filters(), THROUGHPUT).empty
