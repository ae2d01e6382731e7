"""Issue 11's columns: a generate result is stored and read back with its TTFT, TPOT and token
rates; a file from before the scenario column (schema v4) upgrades, keeps its rows and reads
them back as forward results."""

from __future__ import annotations

import msgspec

from descriptions import CPU, model_description
from engine.config import BenchmarkConfig
from engine.result import FAILED, Measurement, ResultRow
from storage.database import Database
from storage.dashboard import Filters
from storage.results import (
    failures_for_run,
    has_recent_result,
    insert_results,
    query_results,
    record_failure,
    results_for_run,
)

GPT2 = model_description("gpt2-tiny", "gpt2", type="decoder", parameters_million=0.2)


def generate_config(batch_size=2, new_tokens=16) -> BenchmarkConfig:
    return BenchmarkConfig(
        model_name=GPT2.name, hardware=CPU.name, batch_size=batch_size, sequence_length=64,
        scenario="generate", new_tokens=new_tokens,
    )


def row_of(measurement: Measurement, run_id="run-g") -> dict:
    return {
        **msgspec.structs.asdict(measurement), "run_id": run_id, "config_key": measurement.config.key(),
        "fingerprint": "fp", "model": GPT2, "hardware": CPU,
    }


def test_a_generate_result_reads_back_with_its_figures_and_raw_token_samples(tmp_path):
    measured = Measurement.of(
        generate_config(), n_samples=3, p50_latency_ms=40.0, samples_ms=[39.0, 40.0, 41.0], ci_met=True,
        ttft_ms=5.0, ttft_p90_ms=5.5, ttft_p99_ms=6.0, ttft_ci_low_ms=4.9, ttft_ci_high_ms=5.1,
        tpot_ms=2.3, tpot_p90_ms=2.6, tpot_p99_ms=3.0, tpot_ci_low_ms=2.2, tpot_ci_high_ms=2.4, e2e_ms=40.0,
        decode_tokens_per_second=2 * 15 / (2.3 * 15 / 1e3), prefill_tokens_per_second=2 * 64 / 5e-3,
        ttft_samples_ms=[4.9, 5.0, 5.1], tpot_samples_ms=[2.2, 2.3, 2.4, 2.6],
    )
    with Database(tmp_path / "g.duckdb") as db:
        insert_results(db, [row_of(measured)])
        (row,) = results_for_run(db, "run-g", ResultRow)
        assert (row.scenario, row.new_tokens) == ("generate", 16)
        assert (row.ttft_ms, row.ttft_p99_ms, row.tpot_ms, row.tpot_p90_ms, row.e2e_ms) == (5.0, 6.0, 2.3, 2.6, 40.0)
        assert (row.ttft_ci_low_ms, row.tpot_ci_high_ms) == (4.9, 2.4)
        assert row.decode_tokens_per_second == measured.decode_tokens_per_second
        assert row.config == measured.config  # scenario and new_tokens survive the round trip
        view = db.cursor().execute(
            "SELECT scenario, ttft_samples_ms, tpot_samples_ms FROM results_view WHERE run_id = 'run-g'"
        ).fetchone()
        assert view == ("generate", [4.9, 5.0, 5.1], [2.2, 2.3, 2.4, 2.6])
        # The scenario is part of the config key: a forward result of the same point is no
        # recent result of the generate config, nor one of another token count.
        assert has_recent_result(db, generate_config().key(), "fp", 30)
        assert not has_recent_result(db, generate_config(new_tokens=32).key(), "fp", 30)
        forward = msgspec.structs.replace(generate_config(), scenario="forward", new_tokens=None)
        assert not has_recent_result(db, forward.key(), "fp", 30)


def test_a_generate_failure_records_its_scenario(tmp_path):
    failed = Measurement.failure(generate_config(batch_size=64), FAILED, "oom", "KV cache out of memory")
    with Database(tmp_path / "f.duckdb") as db:
        record_failure(db, row_of(failed) | {"is_compatible": False})
        (row,) = failures_for_run(db, "run-g", ResultRow)
        assert (row.scenario, row.new_tokens, row.error_type) == ("generate", 16, "oom")


def test_a_v4_file_upgrades_keeps_its_rows_and_reads_them_as_forward_results(tmp_path):
    path = tmp_path / "v4.duckdb"
    with Database(path, migrate_to=4) as old, old.writing() as cursor:
        cursor.execute("INSERT INTO models (model_name, model_family, model_type) VALUES ('bert-old', 'bert', 'encoder')")
        cursor.execute("INSERT INTO hardware_platforms (hardware_type, device_name, platform) VALUES ('cpu', 'Old CPU', 'cpu')")
        for batch_size in (1, 8):
            cursor.execute(
                "INSERT INTO performance_results (run_id, model_id, hardware_id, batch_size, precision, "
                "sequence_length, n_samples, p50_latency_ms, ci_met, config_key, fingerprint, samples_ms) "
                "VALUES ('r-old', 1, 1, ?, 'fp32', 128, 50, 2.4, true, ?, 'fp', [2.3, 2.4, 2.5])",
                [batch_size, f"bert-old|cpu|bs{batch_size}|fp32|seq128|img-|latency|attn-sdpa"],
            )
        cursor.execute(
            "INSERT INTO hardware_compatibility (run_id, model_id, hardware_id, batch_size, precision, "
            "is_compatible, error_type, status) VALUES ('r-old', 1, 1, 64, 'fp32', false, 'oom', 'failed')"
        )

    with Database(path) as upgraded:
        rows = query_results(upgraded, ResultRow, Filters(model="bert-old"))
        assert sorted(row.batch_size for row in rows) == [1, 8]
        assert {row.scenario for row in rows} == {"forward"}
        assert all(row.ttft_ms is None and row.new_tokens is None for row in rows)
        assert all(row.config.scenario == "forward" for row in rows)
        (failure,) = failures_for_run(upgraded, "r-old", ResultRow)
        assert (failure.batch_size, failure.scenario) == (64, "forward")
        # A forward config's key is what it was before scenarios, so old results still count
        # for incremental skips.
        forward = BenchmarkConfig(model_name="bert-old", hardware="cpu", batch_size=8, attn_implementation="sdpa")
        assert has_recent_result(upgraded, forward.key(), "fp", 30)
        samples = upgraded.cursor().execute("SELECT samples_ms FROM results_view ORDER BY batch_size").fetchall()
        assert samples == [([2.3, 2.4, 2.5],), ([2.3, 2.4, 2.5],)]
