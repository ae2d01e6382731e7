"""What a comparison names each config by comes from the stored columns (storage.comparisons
reads them onto each row), never from the config key: a current file's rows carry every field of
their config, and an upgraded file's rows, NULL where a column did not exist yet, still read
sensibly."""

from __future__ import annotations

import msgspec

from descriptions import CPU, model_description
from engine.compare import ComparedResult, compare_runs, config_label
from engine.config import BenchmarkConfig
from engine.result import Measurement
from storage.comparisons import results_with_samples
from storage.database import Database
from storage.results import insert_results

BERT = model_description("bert-old", "bert")
SAMPLES = [2.3, 2.4, 2.5, 2.4, 2.3, 2.5, 2.4, 2.4, 2.3, 2.5]


def stored(config: BenchmarkConfig, run_id: str, config_key: str | None = None) -> dict:
    measured = Measurement.of(config, n_samples=len(SAMPLES), p50_latency_ms=2.4, samples_ms=SAMPLES, ci_met=True)
    return {
        **msgspec.structs.asdict(measured), "run_id": run_id, "config_key": config_key or config.key(),
        "fingerprint": "fp", "model": BERT, "hardware": CPU,
    }


def test_a_compared_rows_fields_are_the_stored_configs_and_label_it(tmp_path):
    configs = [
        BenchmarkConfig(model_name="bert-old", hardware="cpu", batch_size=1, sequence_length=16, attn_implementation="eager"),
        BenchmarkConfig(model_name="bert-old", hardware="cpu", batch_size=8, timing="latency", attn_implementation="sdpa"),
        BenchmarkConfig(model_name="bert-old", hardware="cpu", batch_size=1, scenario="generate", new_tokens=8),
    ]
    with Database(tmp_path / "c.duckdb") as db:
        # A key of another shape than BenchmarkConfig.key() writes: the labels do not read it.
        insert_results(db, [stored(config, "b", config_key=f"key-{index}") for index, config in enumerate(configs)])
        rows = results_with_samples(db, "b", ComparedResult)
    assert [row.config for row in rows] == configs
    comparison = compare_runs([], rows, baseline_run_id="a", contender_run_id="b")
    assert [config.label for config in comparison.added] == [config_label(config) for config in configs] == [
        "bert-old · cpu · bs1 · fp32 · seq16 · attn eager",
        "bert-old · cpu · bs8 · fp32 · latency",
        "bert-old · cpu · bs1 · fp32 · generate 8 tokens",
    ]


def test_a_result_stored_before_timing_and_attention_columns_gets_a_sensible_label(tmp_path):
    path = tmp_path / "v3.duckdb"
    with Database(path, migrate_to=3) as old, old.writing() as cursor:
        cursor.execute("INSERT INTO models (model_name, model_family, model_type) VALUES ('bert-old', 'bert', 'encoder')")
        cursor.execute("INSERT INTO hardware_platforms (hardware_type, device_name, platform) VALUES ('cpu', 'Old CPU', 'cpu')")
        for batch_size, sequence_length in ((8, 128), (1, 16)):
            cursor.execute(
                "INSERT INTO performance_results (run_id, model_id, hardware_id, batch_size, precision, "
                "sequence_length, n_samples, p50_latency_ms, ci_met, config_key, fingerprint, samples_ms) "
                "VALUES ('r-old', 1, 1, ?, 'fp32', ?, 10, 2.4, true, ?, 'fp', ?)",
                # The key of that time, before timing and attention were part of it.
                [batch_size, sequence_length, f"bert-old|cpu|bs{batch_size}|fp32|seq{sequence_length}|img-", SAMPLES],
            )

    with Database(path) as upgraded:
        rows = results_with_samples(upgraded, "r-old", ComparedResult)
    assert [(row.timing, row.attn_implementation, row.new_tokens) for row in rows] == [(None, None, None)] * 2
    comparison = compare_runs(rows, [], baseline_run_id="r-old", contender_run_id="r-new")
    assert [config.label for config in comparison.removed] == ["bert-old · cpu · bs8 · fp32", "bert-old · cpu · bs1 · fp32 · seq16"]
