"""What an upgrade promises beyond keeping rows: the views read migrated rows, and a file
from a newer benchboard is refused rather than misread."""

from __future__ import annotations

import pytest

from engine.result import ResultRow
from storage.database import Database, StorageError
from storage.dashboard import Filters
from storage.results import query_results
from storage.schema import LATEST_VERSION


def test_results_view_reads_rows_stored_before_the_latest_schema(tmp_path):
    path = tmp_path / "v2.duckdb"
    with Database(path, migrate_to=2) as old, old.writing() as cursor:
        cursor.execute("INSERT INTO models (model_name, model_family, model_type) VALUES ('bert-old', 'bert', 'encoder')")
        cursor.execute("INSERT INTO hardware_platforms (hardware_type, device_name, platform) VALUES ('cpu', 'Old CPU', 'cpu')")
        cursor.execute(
            "INSERT INTO performance_results (run_id, model_id, hardware_id, batch_size, precision, sequence_length, "
            "n_samples, average_latency_ms, p50_latency_ms, ci_met, throughput_items_per_second, config_key, "
            "fingerprint) VALUES ('r-old', 1, 1, 4, 'fp32', 128, 50, 2.5, 2.4, true, 1600, 'k', 'fp')"
        )

    with Database(path) as upgraded:
        (row,) = query_results(upgraded, ResultRow, Filters(model="bert-old"))
        assert (row.model_name, row.model_family, row.hardware, row.device_name) == ("bert-old", "bert", "cpu", "Old CPU")
        assert (row.batch_size, row.n_samples, row.p50_latency_ms, row.ci_met) == (4, 50, 2.4, True)
        assert row.total_timed_seconds is None  # measured before it was kept: unknown, not zero
        assert row.created_at.tzinfo is not None


def test_a_v5_file_gets_the_throughput_ci_columns_and_its_rows_read_as_no_ci_with_their_repeats(tmp_path):
    path = tmp_path / "v5.duckdb"
    with Database(path, migrate_to=5) as old, old.writing() as cursor:
        cursor.execute("INSERT INTO models (model_name, model_family, model_type) VALUES ('bert-old', 'bert', 'encoder')")
        cursor.execute("INSERT INTO hardware_platforms (hardware_type, device_name, platform) VALUES ('cpu', 'Old CPU', 'cpu')")
        cursor.execute(
            "INSERT INTO performance_results (run_id, model_id, hardware_id, batch_size, precision, n_samples, "
            "p50_latency_ms, throughput_items_per_second, repeats, between_process_cv, config_key, fingerprint) "
            "VALUES ('r-v5', 1, 1, 1, 'fp32', 50, 0.7, 140.1, 2, 0.2185, 'k', 'fp')"
        )
        columns = {row[0] for row in cursor.execute("DESCRIBE performance_results").fetchall()}
        assert "throughput_ci_low_items_per_second" not in columns

    with Database(path) as upgraded:
        assert upgraded.schema_version == LATEST_VERSION
        (row,) = query_results(upgraded, ResultRow, Filters(model="bert-old"))
        assert row.throughput_items_per_second == 140.1
        # Measured before the throughput had a CI of its own: none, not the median's.
        assert (row.throughput_ci_low_items_per_second, row.throughput_ci_high_items_per_second) == (None, None)
        assert (row.repeats, row.between_process_cv) == (2, 0.2185)


def test_a_file_from_a_newer_benchboard_is_refused_with_both_versions_named(tmp_path):
    path = tmp_path / "future.duckdb"
    with Database(path) as current, current.writing() as cursor:
        cursor.execute("INSERT INTO schema_version VALUES (?)", [LATEST_VERSION + 1])
    with pytest.raises(StorageError) as refused:
        Database(path)
    assert f"schema v{LATEST_VERSION + 1}, newer than this benchboard (v{LATEST_VERSION})" in str(refused.value)
    assert "upgrade benchboard" in str(refused.value)
