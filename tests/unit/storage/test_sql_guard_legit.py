"""Legitimate analytical queries pass the guard and return the right answers.

The expected rows come from the data make_benchmark_db inserts:
  results 1-6: (model, hardware, batch, precision, latency ms, throughput/s)
  1 bert cpu 1 fp32 10 100 | 2 bert cpu 8 fp32 40 200 | 3 gpt2 cpu 1 fp32 20 50
  4 bert cuda 1 fp16 2 500 | 5 vit cuda 8 fp16 4 2000 | 6 gpt2 cuda 8 fp32 8 1000
"""

import pytest

from storage.schema import ALLOWED_QUERY_TABLES
from storage.sql_execution import SQL_POOL
from storage.sql_guard import run_guarded_query
from test_sql_guard import database_fingerprint, make_benchmark_db

SEED_DOC_JOIN = """
-- Get average throughput by model family and hardware
SELECT
    m.model_family,
    h.hardware_type,
    AVG(pr.throughput_items_per_second) as avg_throughput
FROM
    performance_results pr
JOIN
    models m ON pr.model_id = m.model_id
JOIN
    hardware_platforms h ON pr.hardware_id = h.hardware_id
GROUP BY
    m.model_family, h.hardware_type
ORDER BY
    avg_throughput DESC
"""

LEGIT = [
    (
        "seed-doc-join",
        SEED_DOC_JOIN,
        {},
        [["vit", "cuda", 2000.0], ["gpt2", "cuda", 1000.0], ["bert", "cuda", 500.0],
         ["bert", "cpu", 150.0], ["gpt2", "cpu", 50.0]],
    ),
    (
        "window-rank",
        """SELECT hardware_type, model_name, batch_size,
                  rank() OVER (PARTITION BY hardware_type ORDER BY throughput_items_per_second DESC) AS place
           FROM results_view ORDER BY hardware_type, place""",
        {},
        [["cpu", "bert-tiny", 8, 1], ["cpu", "bert-tiny", 1, 2], ["cpu", "gpt2-tiny", 1, 3],
         ["cuda", "vit-tiny", 8, 1], ["cuda", "gpt2-tiny", 8, 2], ["cuda", "bert-tiny", 1, 3]],
    ),
    (
        "window-lag-speedup",
        """SELECT batch_size, throughput_items_per_second
                  / lag(throughput_items_per_second) OVER (ORDER BY batch_size) AS speedup
           FROM results_view WHERE model_name = 'bert-tiny' AND hardware_type = 'cpu' ORDER BY batch_size""",
        {},
        [[1, None], [8, 2.0]],
    ),
    (
        "qualify-best-per-hardware",
        """SELECT hardware_type, model_name, throughput_items_per_second FROM results_view
           QUALIFY row_number() OVER (
               PARTITION BY hardware_type ORDER BY throughput_items_per_second DESC
           ) = 1
           ORDER BY hardware_type""",
        {},
        [["cpu", "bert-tiny", 200.0], ["cuda", "vit-tiny", 2000.0]],
    ),
    (
        "cte",
        """WITH per_model AS (
               SELECT model_id, max(throughput_items_per_second) AS best
               FROM performance_results GROUP BY model_id
           )
           SELECT m.model_name, p.best FROM per_model p JOIN models m USING (model_id)
           ORDER BY p.best DESC""",
        {},
        [["vit-tiny", 2000.0], ["gpt2-tiny", 1000.0], ["bert-tiny", 500.0]],
    ),
    (
        "cte-named-like-a-table-is-the-cte",
        "WITH models AS (SELECT 'shadow' AS model_name) SELECT model_name FROM models",
        {},
        [["shadow"]],
    ),
    (
        "recursive-cte",
        """WITH RECURSIVE doubling(batch) AS (
               SELECT 1 UNION ALL SELECT batch * 2 FROM doubling WHERE batch < 16
           )
           SELECT list(batch ORDER BY batch) FROM doubling""",
        {},
        [[[1, 2, 4, 8, 16]]],
    ),
    (
        "aggregates",
        """SELECT precision, count(*), min(average_latency_ms), max(average_latency_ms), sum(memory_peak_mb)
           FROM performance_results GROUP BY precision ORDER BY precision""",
        {},
        [["fp16", 2, 2.0, 4.0, 1200.0], ["fp32", 4, 8.0, 40.0, 3200.0]],
    ),
    (
        "order-limit-offset",
        "SELECT result_id FROM performance_results ORDER BY average_latency_ms DESC LIMIT 2 OFFSET 1",
        {},
        [[3], [1]],
    ),
    (
        "pivot-clause",
        """SELECT * FROM (SELECT model_family, hardware_type, throughput_items_per_second FROM results_view)
           PIVOT (sum(throughput_items_per_second) FOR hardware_type IN ('cpu', 'cuda'))
           ORDER BY model_family""",
        {},
        [["bert", 300.0, 500.0], ["gpt2", 50.0, 1000.0], ["vit", None, 2000.0]],
    ),
    (
        "pivot-statement",
        "PIVOT (SELECT precision FROM results_view) ON precision USING count(*)",
        {},
        [[2, 4]],
    ),
    (
        "pivot-statement-in-a-query",
        """SELECT * FROM (PIVOT results_view ON precision USING count(*) GROUP BY hardware_type)
           ORDER BY hardware_type""",
        {},
        [["cpu", 0, 3], ["cuda", 2, 1]],
    ),
    (
        # DuckDB's PIVOT statement with ORDER BY and LIMIT, which sqlglot cannot parse: it runs
        # as SELECT * FROM (PIVOT ...) ORDER BY ... LIMIT ...
        "pivot-statement-order-by-limit",
        "PIVOT results_view ON precision USING count(*) GROUP BY hardware_type ORDER BY hardware_type DESC LIMIT 1",
        {},
        [["cuda", 2, 1]],
    ),
    (
        "pivot-statement-order-by",
        """PIVOT results_view ON hardware_type USING max(throughput_items_per_second)
           GROUP BY model_family
           ORDER BY model_family;""",
        {},
        [["bert", 200.0, 500.0], ["gpt2", 50.0, 1000.0], ["vit", None, 2000.0]],
    ),
    (
        "pivot-statement-limit-offset",
        "PIVOT results_view ON precision USING count(*) GROUP BY model_name ORDER BY model_name LIMIT 2 OFFSET 1",
        {},
        [["gpt2-tiny", 0, 2], ["vit-tiny", 1, 0]],
    ),
    (
        # A CTE whose body is a PIVOT statement: run as SELECT * FROM (PIVOT ...) inside it.
        "pivot-statement-in-a-cte",
        """WITH by_precision AS (PIVOT results_view ON precision USING count(*) GROUP BY hardware_type)
           SELECT * FROM by_precision ORDER BY hardware_type""",
        {},
        [["cpu", 0, 3], ["cuda", 2, 1]],
    ),
    (
        "unpivot-statement-order-by-limit",
        """UNPIVOT (SELECT result_id, p50_latency_ms, p99_latency_ms FROM results_view WHERE result_id = 1)
           ON p50_latency_ms, p99_latency_ms INTO NAME statistic VALUE ms ORDER BY ms DESC LIMIT 1""",
        {},
        [[1, "p99_latency_ms", 12.0]],
    ),
    (
        "union-all",
        """SELECT 'ok' AS outcome, count(*) FROM performance_results
           UNION ALL SELECT 'failed', count(*) FROM hardware_compatibility ORDER BY outcome""",
        {},
        [["failed", 1], ["ok", 6]],
    ),
    (
        "intersect",
        """SELECT model_id FROM performance_results WHERE hardware_id = 1
           INTERSECT SELECT model_id FROM performance_results WHERE hardware_id = 2 ORDER BY 1""",
        {},
        [[1], [2]],
    ),
    ("values", "VALUES (1, 'one'), (2, 'two')", {}, [[1, "one"], [2, "two"]]),
    (
        "values-joined",
        """SELECT t.label, m.model_name FROM (VALUES ('small', 1), ('large', 3)) AS t(label, id)
           JOIN models m ON m.model_id = t.id ORDER BY t.label""",
        {},
        [["large", "vit-tiny"], ["small", "bert-tiny"]],
    ),
    (
        "case",
        """SELECT result_id, CASE WHEN average_latency_ms < 5 THEN 'fast'
                                 WHEN average_latency_ms < 20 THEN 'medium' ELSE 'slow' END
           FROM performance_results ORDER BY result_id""",
        {},
        [[1, "medium"], [2, "slow"], [3, "slow"], [4, "fast"], [5, "fast"], [6, "medium"]],
    ),
    (
        "date-functions",
        """SELECT date_trunc('month', created_at) AS month, strftime(created_at, '%Y-%m') AS label,
                  extract(year FROM created_at) AS year, count(*)
           FROM performance_results GROUP BY ALL ORDER BY month""",
        {},
        [["2024-05-01T00:00:00", "2024-05", 2024, 4], ["2024-06-01T00:00:00", "2024-06", 2024, 2]],
    ),
    (
        "date-arithmetic",
        """SELECT run_id, date_diff('day', created_at, TIMESTAMP '2024-07-01') AS age_days,
                  created_at + INTERVAL 1 DAY AS next_day FROM test_runs ORDER BY run_id""",
        {},
        [["run-a", 61, "2024-05-02T10:00:00"], ["run-b", 16, "2024-06-16T12:30:00"]],
    ),
    (
        "list-functions-on-samples",
        """SELECT result_id, len(samples_ms), list_max(samples_ms), list_avg(samples_ms),
                  list_transform(samples_ms, x -> x * 2)[1], list_sort(samples_ms, 'DESC')[1]
           FROM performance_results WHERE result_id IN (3, 4) ORDER BY result_id""",
        {},
        [[3, 4, 24.0, 21.0, 38.0, 24.0], [4, 3, 2.5, 2.0, 3.0, 2.5]],
    ),
    (
        "unnest-samples",
        """SELECT result_id, median(sample) FROM (
               SELECT result_id, unnest(samples_ms) AS sample FROM performance_results
           ) GROUP BY result_id HAVING count(*) > 3""",
        {},
        [[3, 20.5]],
    ),
    (
        "unnest-in-from",
        """SELECT sample FROM performance_results, unnest(samples_ms) AS u(sample)
           WHERE result_id = 1 ORDER BY sample DESC""",
        {},
        [[11.0], [10.0], [9.0]],
    ),
    (
        "percentiles",
        """SELECT median(throughput_items_per_second), quantile_cont(average_latency_ms, 0.5),
                  percentile_disc(0.5) WITHIN GROUP (ORDER BY batch_size),
                  quantile_cont(p90_latency_ms, [0.0, 1.0])
           FROM performance_results""",
        {},
        [[350.0, 9.0, 1, [2.4, 41.0]]],
    ),
    (
        "named-parameter",
        """SELECT batch_size, throughput_items_per_second FROM results_view
           WHERE model_name = $model AND hardware_type = $hardware ORDER BY batch_size""",
        {"model": "bert-tiny", "hardware": "cpu"},
        [[1, 100.0], [8, 200.0]],
    ),
    (
        "failures-view",
        "SELECT model_name, hardware, error_type, error_message FROM failures_view",
        {},
        [["vit-tiny", "cpu", "OOM", "needs ~9 GB, device has 8 GB"]],
    ),
    (
        "exists-subquery",
        """SELECT model_name FROM models m WHERE NOT EXISTS (
               SELECT 1 FROM performance_results pr WHERE pr.model_id = m.model_id AND pr.hardware_id = 1
           )""",
        {},
        [["vit-tiny"]],
    ),
    (
        "strings",
        """SELECT string_agg(upper(model_family), '+' ORDER BY model_family),
                  regexp_replace('bert-tiny', '-tiny$', ''), concat(device_name, ' (', platform, ')')
           FROM models, hardware_platforms WHERE hardware_id = 2 GROUP BY device_name, platform""",
        {},
        [["BERT+GPT2+VIT", "bert", "NVIDIA H100 (cuda:0)"]],
    ),
    (
        "from-first-and-main-qualified",
        "FROM main.models SELECT model_name WHERE parameters_million > 5 ORDER BY model_name",
        {},
        [["vit-tiny"]],
    ),
    (
        "mixed-case-names",
        "select MODEL_NAME from MODELS where MODEL_ID = 2",
        {},
        [["gpt2-tiny"]],
    ),
    (
        "star-exclude",
        "SELECT * EXCLUDE (created_at) FROM hardware_platforms WHERE hardware_id = 1",
        {},
        [[1, "cpu", "Intel Xeon", "cpu", 64.0, None, None, None]],
    ),
    # Analysts' idioms with computed sizes: they run, their sizes checked in the SQL as it runs.
    (
        "text-bar-from-a-computed-width",
        "SELECT result_id, repeat('#', (throughput_items_per_second / 100)::INT) AS bar FROM performance_results "
        "WHERE result_id <= 3 ORDER BY result_id",
        {},
        [[1, "#"], [2, "##"], [3, ""]],
    ),
    (
        "range-of-the-batch-size",
        "SELECT result_id, range(batch_size) FROM performance_results WHERE result_id IN (1, 2) ORDER BY result_id",
        {},
        [[1, [0]], [2, [0, 1, 2, 3, 4, 5, 6, 7]]],
    ),
    (
        "series-to-the-batch-size",
        "SELECT result_id, generate_series(1, batch_size) FROM performance_results WHERE result_id IN (1, 2) "
        "ORDER BY result_id",
        {},
        [[1, [1]], [2, [1, 2, 3, 4, 5, 6, 7, 8]]],
    ),
    (
        "lpad-to-a-computed-width",
        "SELECT lpad(model_name, 4 + model_id * 4, '.') FROM models ORDER BY model_id",
        {},
        [["bert-tin"], ["...gpt2-tiny"], ["........vit-tiny"]],
    ),
    (
        "space-from-a-computed-width",  # runs as REPEAT(' ', ...) after sqlglot's rewrite
        "SELECT length(space(model_id * 2)) FROM models ORDER BY model_id",
        {},
        [[2], [4], [6]],
    ),
    (
        "regexp-split-to-table",
        "SELECT regexp_split_to_table('bert-tiny,gpt2-tiny', ',') AS name",
        {},
        [["bert-tiny"], ["gpt2-tiny"]],
    ),
    (
        "daily-series-to-a-computed-date",
        "SELECT run_id, len(generate_series(DATE '2024-01-01', CAST(created_at AS DATE), INTERVAL 1 DAY)) "
        "FROM test_runs ORDER BY run_id",
        {},
        [["run-a", 122], ["run-b", 167]],
    ),
    (
        "computed-sizes-at-their-limits",
        "SELECT len(range(model_id * 1024 - 1024 * model_id + 1024)), len(generate_series(1, model_id + 1023)), "
        "len(repeat('ab', model_id * 5000)), len(lpad('', model_id * 10000, '.')), "
        "len(list_resize([0], model_id * 1024)) FROM models WHERE model_id = 1",
        {},
        [[1024, 1024, 10000, 10000, 1024]],
    ),
    (
        "computed-sizes-going-down-and-null",
        "SELECT range(model_id * 3, 0, -1), generate_series(model_id, -model_id, -1), repeat('x', NULL::INT), "
        "lpad('a', NULL::INT, ' '), list_resize([1], NULL::INT), range(0, NULL::INT) FROM models WHERE model_id = 1",
        {},
        [[[3, 2, 1], [1, 0, -1], None, None, [], None]],
    ),
    ("a-million-rows-from-a-literal-series", "SELECT count(*) FROM unnest(generate_series(1, 1000000))", {},
     [[1000000]]),
    (
        "replacements",
        "SELECT replace(model_name, '-tiny', '-small'), regexp_replace(model_name, '-tiny$', '') "
        "FROM models ORDER BY model_id",
        {},
        [["bert-small", "bert"], ["gpt2-small", "gpt2"], ["vit-small", "vit"]],
    ),
    (
        "printf-and-format-with-literal-widths",
        "SELECT printf('%-10s|%5.1f', model_name, parameters_million), format('{:>10}', model_name) "
        "FROM models WHERE model_id = 1",
        {},
        [["bert-tiny |  4.4", " bert-tiny"]],
    ),
    (
        "list-reduce-without-doubling",
        "SELECT list_reduce(samples_ms, lambda a, b: a + b), list_reduce(['a', 'b', 'c'], lambda a, b: a || b) "
        "FROM performance_results WHERE result_id = 1",
        {},
        [[30.0, "abc"]],
    ),
    (
        "recursive-cte-building-a-path",  # its concatenations are checked as it runs, and pass
        "WITH RECURSIVE r(s, i) AS (SELECT 'a', 0 UNION ALL SELECT s || '/' || i, i + 1 FROM r WHERE i < 3) "
        "SELECT list(s ORDER BY i) FROM r",
        {},
        [[["a", "a/0", "a/0/1", "a/0/1/2"]]],
    ),
    (
        "describe-an-allowed-query",
        "DESCRIBE SELECT model_name, batch_size FROM results_view",
        {},
        [["model_name", "VARCHAR", "NO", "UNI", None, None], ["batch_size", "INTEGER", "NO", None, None, None]],
    ),
]


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory):
    db = make_benchmark_db(tmp_path_factory.mktemp("legit") / "bench.duckdb")
    yield db
    SQL_POOL.wait_idle()  # a query answered at its deadline may still be stopping
    db.close()


def test_the_guard_answers_every_legitimate_case_as_duckdb_itself_does(shared_db):
    """At least twenty distinct cases, each run through the guard and through the executor alone
    (DuckDB with the time, byte and memory bounds, none of the guard's checks or rewrites), on the
    same data: the guard changes no answer. A case written for the guard's dialect (the deprecated
    ``x -> x + 1`` lambda, ``space(n)``) is one DuckDB refuses as written."""
    from storage.sql_execution import QueryFailed, execute_read_only

    assert len(LEGIT) >= 20 and len({name for name, *_ in LEGIT}) == len(LEGIT)
    same = []
    for name, sql, params, expected in LEGIT:
        guarded = run_guarded_query(shared_db, sql, allowed_tables=ALLOWED_QUERY_TABLES, params=params)
        assert guarded.rows == expected, name
        try:
            unguarded = execute_read_only(shared_db, sql, params=params or None, timeout_s=30.0).rows
        except QueryFailed as error:
            unguarded = error
        if isinstance(unguarded, QueryFailed):
            assert "Deprecated lambda arrow" in str(unguarded) or "space does not exist" in str(unguarded), name
        else:
            assert unguarded == guarded.rows, name
            same.append(name)
    assert len(same) >= 20, same


def test_a_rewritten_query_keeps_the_column_names_duckdb_gives_it(shared_db):
    """sqlglot writes list() as array_agg(), string_agg() as listagg(), and a bounded size as a
    CASE; the columns keep the names DuckDB gives the query as typed. Stars and aliases as they were."""
    from storage.sql_execution import execute_read_only

    for sql in ("SELECT list(batch_size ORDER BY batch_size), string_agg(precision, ',') FROM performance_results",
                "SELECT lpad(model_name, 4 + model_id * 4, '.'), len(range(model_id)), model_id FROM models",
                "SELECT replace(model_name, '-tiny', '-small'), 0::DOUBLE / 0, models.model_name FROM models",
                "SELECT list(model_id) FROM models UNION ALL SELECT list(result_id) FROM performance_results",
                "WITH m AS (SELECT * FROM models) SELECT *, list(model_id) OVER () AS ids, list(model_id) OVER () "
                "FROM m ORDER BY list(model_id) OVER (), model_id",
                "SELECT COLUMNS('model_(id|name)'), len(model_name) FROM models ORDER BY 1",
                "FROM models SELECT string_agg(model_name, ',') AS names, string_agg(model_name, ',')"):
        guarded = run_guarded_query(shared_db, sql, allowed_tables=ALLOWED_QUERY_TABLES)
        unguarded = execute_read_only(shared_db, sql)
        assert (guarded.columns, guarded.rows) == (unguarded.columns, unguarded.rows), sql


def test_a_computed_size_over_its_limit_fails_the_query_saying_so(shared_db):
    """Not a clamped, wrong answer: a 400's one line naming the function, the size and the limit.
    (Never run unguarded: each is built to run away, one allocating gigabytes outside DuckDB's
    memory limit.)"""
    from storage.sql_guard import QueryFailed

    over = [
        ("SELECT len(range(n)) FROM (SELECT 5000 n)", "range(): 5000 elements is over the limit of 1,024"),
        ("SELECT len(generate_series(1, model_id::BIGINT * 1000000000)) FROM models",
         "generate_series(): 1000000000 elements is over the limit of 1,024"),
        ("SELECT generate_series(1, model_id + 1024) FROM models", "generate_series(): 1025 elements"),
        ("SELECT range(0, -5000 * model_id, -2) FROM models", "range(): 2500 elements is over the limit of 1,024"),
        ("SELECT generate_series(DATE '2024-01-01', CAST(created_at AS DATE) + 5000, INTERVAL 1 DAY) FROM test_runs",
         "generate_series(): from 2024-01-01 to "),
        ("SELECT len(repeat('ab', model_id::BIGINT * 1000000000)) FROM models",
         "repeat(): 1000000000 times is over the limit of 10,000 characters"),
        ("SELECT repeat(model_name, 2000) FROM models", "repeat(): 2000 times is over the limit of 10,000 characters"),
        ("SELECT rpad('x', model_id * 20000, '.') FROM models",
         "rpad(): a width of 20000 is over the limit of 10,000 characters"),
        ("SELECT len(list_resize([0], batch_size * 100000)) FROM performance_results WHERE result_id = 2",
         "list_resize(): 800000 elements is over the limit of 1,024"),
        ("SELECT list_resize([''], 1000, model_name || '-0123456789') FROM models",
         "list_resize(): 1000 copies of the fill value is over the limit of 10,000 characters"),
    ]
    for sql, reason in over:
        with pytest.raises(QueryFailed) as failed:
            run_guarded_query(shared_db, sql, allowed_tables=ALLOWED_QUERY_TABLES)
        assert reason in failed.value.reason, sql
        assert failed.value.reason.endswith("a computed size may reach") and "\n" not in failed.value.reason, sql


@pytest.mark.parametrize(
    ("sql", "params", "expected"), [case[1:] for case in LEGIT], ids=[case[0] for case in LEGIT]
)
def test_legitimate_query_returns_the_right_answer(shared_db, sql, params, expected):
    before = database_fingerprint(shared_db)
    result = run_guarded_query(shared_db, sql, allowed_tables=ALLOWED_QUERY_TABLES, params=params)
    assert result.rows == expected
    assert (result.row_count, result.truncated) == (len(expected), False)
    assert database_fingerprint(shared_db) == before


def test_describe_an_allowed_table_lists_its_columns(shared_db):
    result = run_guarded_query(shared_db, "DESCRIBE models", allowed_tables=ALLOWED_QUERY_TABLES)
    assert result.columns[:2] == ["column_name", "column_type"]
    assert result.rows[:2] == [["model_id", "INTEGER", "NO", "PRI", "nextval('seq_models')", None],
                               ["model_name", "VARCHAR", "NO", "UNI", None, None]]


@pytest.mark.parametrize("target", ["models", "results_view", "SELECT batch_size FROM performance_results"])
def test_summarize_an_allowed_table_or_query_is_read_only(shared_db, target):
    before = database_fingerprint(shared_db)
    result = run_guarded_query(shared_db, f"SUMMARIZE {target}", allowed_tables=ALLOWED_QUERY_TABLES)
    assert result.columns[:4] == ["column_name", "column_type", "min", "max"]
    assert result.row_count >= 1 and not result.truncated
    assert database_fingerprint(shared_db) == before
