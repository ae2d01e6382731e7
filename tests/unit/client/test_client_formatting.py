"""Terminal views: tables line up, numbers read well, the progress line says where a run is."""

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
