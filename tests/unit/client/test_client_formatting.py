"""Terminal views: tables line up, numbers read well, the progress line says where a run is."""

import subprocess
import sys

from benchboard_client.formatting import describe_progress, format_table


def test_a_table_aligns_text_left_and_numbers_right():
    table = format_table([{"model": "bert-tiny", "ms": 1.23456}, {"model": "gpt2", "ms": 12345.6}])
    header, rule, first, second = table.splitlines()
    assert header.split() == ["model", "ms"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert first.startswith("bert-tiny") and first.endswith("1.23")
    assert second.startswith("gpt2") and second.endswith("12,346")
    assert len(first) == len(second)


def test_a_table_shows_only_the_columns_asked_for_and_marks_missing_values():
    table = format_table([{"a": 1, "b": None, "c": "hidden"}], ["b", "a"])
    assert table.splitlines()[0].split() == ["b", "a"]
    assert "hidden" not in table
    assert table.splitlines()[2].split() == ["-", "1"]


def test_lists_and_booleans_read_as_words():
    line = format_table([{"precisions": ["fp32", "int8"], "ci_met": True}]).splitlines()[2]
    assert "fp32, int8" in line and "yes" in line


def test_no_rows_says_so():
    assert format_table([]) == "(no rows)"


def test_the_progress_line_shows_bar_percent_step_and_counts():
    line = describe_progress({"status": "running", "progress": 0.5, "current_step": "bert-tiny on cpu",
                              "completed_configs": 1, "total_configs": 2, "completed_models": 0,
                              "total_models": 1, "error": None})
    assert "#" * 12 + "-" * 12 in line
    assert "50.0%" in line and "running" in line and "bert-tiny on cpu" in line
    assert "configs 1/2" in line and "models 0/1" in line


def test_the_progress_line_shows_a_runs_error():
    line = describe_progress({"status": "failed", "progress": 1.0, "error": "worker crashed"})
    assert "error: worker crashed" in line


def test_results_print_forward_rows_then_generate_rows_with_their_own_columns():
    from benchboard_client.formatting import GENERATE_RESULT_COLUMNS, RESULT_COLUMNS, format_results

    forward = {"model_name": "bert-tiny", "hardware": "cpu", "batch_size": 1, "precision": "fp32",
               "p50_latency_ms": 1.5, "scenario": "forward"}
    old = {**forward, "model_name": "bert-old", "scenario": None}  # stored before scenarios: forward
    generate = {"model_name": "gpt2-tiny", "hardware": "cpu", "batch_size": 2, "precision": "fp32",
                "scenario": "generate", "new_tokens": 16, "ttft_ms": 4.25, "tpot_ms": 1.75, "e2e_ms": 31.0,
                "decode_tokens_per_second": 17142.9, "p50_latency_ms": 31.0}
    text = format_results([generate, forward, old])
    forward_table, generate_table = text.split("\n\ngenerate:\n")
    assert forward_table.splitlines()[0].split() == list(RESULT_COLUMNS)
    assert [line.split()[0] for line in forward_table.splitlines()[2:]] == ["bert-tiny", "bert-old"]
    header, _, row = generate_table.splitlines()
    assert header.split() == list(GENERATE_RESULT_COLUMNS)
    cells = dict(zip(header.split(), row.split(), strict=True))
    assert cells["model_name"] == "gpt2-tiny" and cells["new_tokens"] == "16"
    assert (cells["ttft_ms"], cells["tpot_ms"], cells["e2e_ms"], cells["decode_tokens_per_second"]) == (
        "4.25", "1.75", "31", "17,143")
    # Only forward rows: one table, as before; framing columns go around each table.
    only = format_results([forward], leading=("run_id",), trailing=("created_at",))
    assert "generate:" not in only and only.splitlines()[0].split() == ["run_id", *RESULT_COLUMNS, "created_at"]
    assert format_results([]) == "(no rows)"


def test_forward_rows_show_how_they_were_timed_after_the_precision():
    from benchboard_client.formatting import format_results

    row = {"model_name": "bert-tiny", "hardware": "cpu", "batch_size": 8, "precision": "fp32",
           "timing": "throughput", "p50_latency_ms": 2.5, "scenario": "forward"}
    header, _, line = format_results([row]).splitlines()
    assert header.split()[:5] == ["model_name", "hardware", "batch_size", "precision", "timing"]
    assert line.split()[:6] == ["bert-tiny", "cpu", "8", "fp32", "throughput", "2.5"]


def test_the_column_lists_load_without_the_clients_or_an_http_library():
    # `benchboard run` prints these at its end and sends nothing: httpx and websockets cost it 0.2 s.
    probe = ("import sys\n"
             "from benchboard_client import GENERATE_RESULT_COLUMNS, RESULT_COLUMNS\n"
             "print(sorted(m for m in ('httpx', 'websockets', 'benchboard_client.sync_client') if m in sys.modules))\n"
             "from benchboard_client import BenchmarkAPIClient\n"
             "print('httpx' in sys.modules, BenchmarkAPIClient.__name__)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "True BenchmarkAPIClient"]
