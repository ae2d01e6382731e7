"""Hostile queries: each is refused before it runs, with a reason naming what was refused,
and the database is the same afterwards."""

import pytest

from storage import sql_guard
from storage.schema import ALLOWED_QUERY_TABLES
from storage.sql_execution import SQL_POOL, execute_read_only
from storage.sql_guard import MAX_QUERY_LENGTH, QueryRefused, QuerySyntaxError, plan_checker, run_guarded_query
from test_sql_guard import database_fingerprint, make_benchmark_db

NOT_A_QUERY = (
    "is not allowed: only queries (SELECT, WITH, set operations, VALUES, PIVOT, DESCRIBE, SUMMARIZE) may run"
)
ALLOWLIST = ", ".join(sorted(ALLOWED_QUERY_TABLES))
TOO_DEEP = "query is nested too deeply (at most 64 levels)"
ONE_STATEMENT = "only one statement is allowed"
POSITIONAL = "positional parameters (? or $1) are not supported: use named ones such as $model"
LONG_QUERY = "SELECT " + " + ".join(["1"] * 40_000)


def not_a_query(kind):
    return f"{kind} {NOT_A_QUERY}"


def no_statement(word):
    return f"syntax error at line 1, column 1: {word!r} does not start a statement; {NOT_A_QUERY.removeprefix('is not allowed: ')}"


def inside_a_query(kind):
    return f"{kind} {NOT_A_QUERY.replace('is not allowed', 'is not allowed inside a query')}"


def not_allowlisted(table):
    return f"table {table} is not in the allowlist: {ALLOWLIST}"


def main_schema_only(table):
    return f"table {table} is not allowed: only tables of the main schema may be queried"


def same_name_as_the_catalog(name):
    return f"the CTE name {name} is also a table or view of the database: rename the CTE"


def FROM_ARGUMENT(function):  # noqa: N802 - reads like the other reason constants
    return f"function {function} may not take a width or precision from an argument"


def IN_A_LAMBDA(function):  # noqa: N802
    return f"function {function} may not be used inside a lambda: it would run once per list element"


def DOUBLING(function):  # noqa: N802
    return f"function {function} may not combine its accumulator with itself: the value would double at every element"


HOSTILE = [
    # DDL and DML, in any case
    ("drop", "DROP TABLE models", not_a_query("DROP")),
    ("drop-lowercase", "drop table models", not_a_query("DROP")),
    ("delete-mixed-case", "DeLeTe FROM performance_results", not_a_query("DELETE")),
    ("update", "UPDATE models SET model_name = 'evil'", not_a_query("UPDATE")),
    ("insert", "INSERT INTO models (model_name) VALUES ('evil')", not_a_query("INSERT")),
    ("create-table", "CREATE TABLE evil AS SELECT * FROM models", not_a_query("CREATE")),
    ("create-macro", "CREATE MACRO evil(a) AS a", not_a_query("CREATE")),
    ("replace-view", "CREATE OR REPLACE VIEW results_view AS SELECT 1", not_a_query("CREATE")),
    ("alter", "ALTER TABLE models RENAME TO m2", not_a_query("ALTER")),
    ("truncate", "TRUNCATE performance_results", not_a_query("TRUNCATE")),
    ("with-then-insert", "WITH x AS (SELECT 1) INSERT INTO models (model_name) SELECT 'evil'",
     not_a_query("INSERT")),
    (
        "insert-inside-cte",
        "WITH x AS (INSERT INTO models (model_name) VALUES ('evil') RETURNING *) SELECT * FROM x",
        inside_a_query("INSERT"),
    ),
    ("describe-in-subquery", "SELECT * FROM (DESCRIBE models)", inside_a_query("DESCRIBE")),
    ("summarize-in-subquery", "SELECT * FROM (SUMMARIZE SELECT * FROM models)", inside_a_query("SUMMARIZE")),
    ("show-in-subquery", "SELECT * FROM (SHOW TABLES)", not_allowlisted("SHOW")),
    ("prepare", "PREPARE p AS SELECT * FROM secrets", not_a_query("PREPARE")),
    ("execute", "EXECUTE p", not_a_query("EXECUTE")),
    ("string-statement", "'/etc/passwd'", not_a_query("a statement starting with '/etc/passwd'")),
    # files, databases, extensions, settings, transactions, utility statements
    ("copy-to", "COPY models TO '/tmp/models.csv'", not_a_query("COPY")),
    ("copy-from", "COPY models FROM '/etc/passwd'", not_a_query("COPY")),
    ("attach", "ATTACH '/tmp/other.duckdb' AS other", not_a_query("ATTACH")),
    ("detach", "DETACH other", not_a_query("DETACH")),
    ("install", "INSTALL httpfs", not_a_query("INSTALL")),
    ("force-install", "FORCE INSTALL httpfs", not_a_query("FORCE INSTALL")),
    ("load", "LOAD httpfs", not_a_query("LOAD")),
    ("pragma", "PRAGMA database_list", not_a_query("PRAGMA")),
    ("pragma-assignment", "PRAGMA enable_profiling = 'json'", not_a_query("PRAGMA")),
    ("set", "SET enable_external_access = true", not_a_query("SET")),
    ("set-global", "SET GLOBAL threads = 1", not_a_query("SET")),
    ("reset", "RESET threads", not_a_query("RESET")),
    ("call", "CALL duckdb_settings()", not_a_query("CALL")),
    ("export", "EXPORT DATABASE '/tmp/dump'", not_a_query("EXPORT")),
    ("import", "IMPORT DATABASE '/tmp/dump'", not_a_query("IMPORT")),
    ("checkpoint", "CHECKPOINT", not_a_query("CHECKPOINT")),
    ("force-checkpoint", "FORCE CHECKPOINT", not_a_query("FORCE CHECKPOINT")),
    ("vacuum", "VACUUM", not_a_query("VACUUM")),
    ("use", "USE memory", not_a_query("USE")),
    ("begin", "BEGIN TRANSACTION", not_a_query("BEGIN")),
    ("commit", "COMMIT", not_a_query("COMMIT")),
    ("show-tables", "SHOW TABLES", not_a_query("SHOW")),
    ("explain", "EXPLAIN SELECT * FROM models", not_a_query("EXPLAIN")),
    ("explain-analyze", "EXPLAIN ANALYZE SELECT * FROM models", not_a_query("EXPLAIN")),
    # table functions
    ("read-csv", "SELECT * FROM read_csv('/etc/passwd')", "table function read_csv is not allowed"),
    ("read-csv-auto", "SELECT * FROM read_csv_auto('data.csv')",
     "table function read_csv_auto is not allowed"),
    ("read-parquet-from-first", "FROM read_parquet('results.parquet')",
     "table function read_parquet is not allowed"),
    ("read-json", "SELECT * FROM read_json('x.json')", "table function read_json is not allowed"),
    ("read-text", "SELECT * FROM read_text('/etc/passwd')", "table function read_text is not allowed"),
    ("read-blob", "SELECT * FROM read_blob('/etc/passwd')", "table function read_blob is not allowed"),
    ("glob", "SELECT * FROM glob('/home/*')", "table function glob is not allowed"),
    ("query", "SELECT * FROM query('SELECT * FROM secrets')", "table function query is not allowed"),
    ("query-table", "SELECT * FROM query_table('secrets')", "table function query_table is not allowed"),
    ("duckdb-settings", "SELECT * FROM duckdb_settings()", "table function duckdb_settings is not allowed"),
    ("duckdb-tables", "SELECT * FROM duckdb_tables()", "table function duckdb_tables is not allowed"),
    ("pragma-function", "SELECT * FROM pragma_table_info('models')",
     "table function pragma_table_info is not allowed"),
    ("sqlite-scan", "SELECT * FROM sqlite_scan('x.db', 't')", "table function sqlite_scan is not allowed"),
    ("range", "SELECT * FROM range(10)", "table function range is not allowed"),
    # one call that builds a huge value cannot be interrupted by the time limit
    ("huge-series", "SELECT count(*) FROM (SELECT unnest(generate_series(1, 1000000000)))",
     "function generate_series may build at most 1,000,000 elements"),
    ("huge-repeat", "SELECT length(repeat('x', 10000000000))", "function repeat may build at most 10,000 characters"),
    ("huge-list-resize", "SELECT list_resize([1], 5000000000)",
     "function list_resize may build at most 1,000,000 elements"),
    ("huge-lpad", "SELECT lpad('x', 600000000, 'y')", "function lpad may build at most 10,000 characters"),
    ("huge-rpad", "SELECT rpad('x', 300000000, 'y')", "function rpad may build at most 10,000 characters"),
    ("nested-repeat", "SELECT repeat(repeat('x', 1000000), 1000)",
     "function repeat may not take the result of another list or string builder"),
    ("wide-printf", "SELECT printf('%0200000000d', 1)", "function printf may build at most 10,000 characters"),
    ("wide-format", "SELECT format('{:>200000000}', 1)", "function format may build at most 10,000 characters"),
    # ... judged in the SQL that runs, after sqlglot's rewrites: space(n) runs as REPEAT(' ', n)
    ("huge-space", "SELECT space(300000000)", "function repeat may build at most 10,000 characters"),
    ("nested-space", "SELECT repeat(space(1000), 1000)",
     "function repeat may not take the result of another list or string builder"),
    ("long-text-repeated", "SELECT repeat('" + "y" * 1000 + "', 1000)",
     "function repeat may build at most 10,000 characters"),
    # ... widths and precisions taken from an argument cannot be checked, so they are refused
    ("printf-star-width", "SELECT printf('%*d', 300000000, 1)", FROM_ARGUMENT("printf")),
    ("printf-star-precision", "SELECT printf('%.*f', 300000000, 1.0)", FROM_ARGUMENT("printf")),
    ("printf-wide-precision", "SELECT printf('%.200000000f', 1.0)",
     "function printf may build at most 10,000 characters"),
    ("format-nested-width", "SELECT format('{:>{}}', 'x', 300000000)", FROM_ARGUMENT("format")),
    ("format-nested-numbered-width", "SELECT format('{0:>{1}}', 'x', 300000000)", FROM_ARGUMENT("format")),
    ("series-computed-step", "SELECT generate_series(1, 100, batch_size) FROM performance_results",
     "function generate_series needs a literal step (a number or an interval such as INTERVAL 1 DAY) "
     "when its start or end is computed"),
    # ... and a builder inside a lambda runs once per element, which interrupt() cannot stop
    ("repeat-in-lambda", "SELECT list_transform(generate_series(1, 1000), lambda x: repeat('x', x))",
     IN_A_LAMBDA("repeat")),
    ("series-in-lambda", "SELECT list_transform(samples_ms, lambda x: range(x::INT)) FROM performance_results",
     IN_A_LAMBDA("range")),
    ("growing-replace-in-lambda", "SELECT list_transform(['a'], lambda x: replace(x, 'a', 'aa'))",
     IN_A_LAMBDA("replace")),
    # ... nor a reduce doubling its accumulator: 31 elements made 2 GB in one call
    ("reduce-doubling-string", "SELECT list_reduce(list_resize(['x'], 31, 'x'), lambda a, b: a || a)",
     DOUBLING("list_reduce")),
    ("reduce-doubling-concat", "SELECT list_reduce(['x', 'y'], lambda a, b: concat(a, b, a))",
     DOUBLING("list_reduce")),
    ("reduce-doubling-list", "SELECT array_reduce([[1], [2]], lambda a, b: list_concat(a, a))",
     DOUBLING("array_reduce")),
    ("computed-format", "SELECT printf(model_name, 1) FROM models", "function printf needs a literal format string"),
    # Not DuckDB syntax (sqlglot reads it as a table function): DuckDB's parser refuses it.
    ("table-keyword", "SELECT * FROM TABLE(models)", 'syntax error at line 1, column 15: unexpected "TABLE"'),
    ("joined", "SELECT * FROM models m JOIN read_parquet('x.parquet') p ON true",
     "table function read_parquet is not allowed"),
    ("lateral-function", "SELECT * FROM models, LATERAL read_csv('x.csv')",
     "function read_csv is not allowed"),
    # file paths as tables
    ("quoted-path", "SELECT * FROM '/etc/passwd'", "file paths as tables are not allowed: '/etc/passwd'"),
    ("from-first-file", "FROM 'results.csv'", "file paths as tables are not allowed: 'results.csv'"),
    ("nested-from-first-file", "SELECT * FROM (FROM 'x.parquet')",
     "file paths as tables are not allowed: 'x.parquet'"),
    ("identifier-path", 'SELECT * FROM "/etc/passwd"', "file paths as tables are not allowed: '/etc/passwd'"),
    ("url", "SELECT * FROM 'https://example.com/x.csv'",
     "file paths as tables are not allowed: 'https://example.com/x.csv'"),
    # file-reading, settings and system functions anywhere in expressions
    ("getenv", "SELECT getenv('HOME')", "function getenv is not allowed"),
    ("current-setting", "SELECT current_setting('threads')", "function current_setting is not allowed"),
    ("read-text-scalar", "SELECT model_name, read_text('/etc/passwd') FROM models",
     "function read_text is not allowed"),
    ("method-call-syntax", "SELECT 'threads'.current_setting()", "function current_setting is not allowed"),
    ("nextval", "SELECT nextval('seq_models')", "function nextval is not allowed"),
    ("current-user", "SELECT current_user", "function current_user is not allowed"),
    ("version", "SELECT version()", "function version is not allowed"),
    ("sleep", "SELECT sleep_ms(100000)", "function sleep_ms is not allowed"),
    ("in-where", "SELECT * FROM models WHERE model_name = getvariable('x')",
     "function getvariable is not allowed"),
    ("write-log", "SELECT write_log('x')", "function write_log is not allowed"),
    # tables off the allowlist, however they are reached
    ("secrets", "SELECT * FROM secrets", not_allowlisted("secrets")),
    ("schema-version", "SELECT * FROM schema_version", not_allowlisted("schema_version")),
    ("catalog-view", "SELECT * FROM duckdb_tables", not_allowlisted("duckdb_tables")),
    ("information-schema", "SELECT * FROM information_schema.tables",
     main_schema_only("information_schema.tables")),
    ("pg-catalog", "SELECT * FROM pg_catalog.pg_tables", main_schema_only("pg_catalog.pg_tables")),
    ("catalog-qualified", "SELECT * FROM bench.main.models", main_schema_only("bench.main.models")),
    ("main-qualified-secret", "SELECT * FROM main.secrets", not_allowlisted("secrets")),
    ("cte-shadowing-a-table", "WITH models AS (SELECT * FROM secrets) SELECT * FROM models",
     not_allowlisted("secrets")),
    ("cte-reading-itself", "WITH secrets AS (SELECT * FROM secrets) SELECT * FROM secrets",
     not_allowlisted("secrets")),
    ("cte-defined-later", "WITH a AS (SELECT * FROM secrets), secrets AS (SELECT 1 AS s) SELECT * FROM a",
     not_allowlisted("secrets")),
    ("cte-out-of-scope", "SELECT * FROM (WITH secrets AS (SELECT 1 AS s) SELECT s FROM secrets), secrets",
     not_allowlisted("secrets")),
    ("subquery-in-from", "SELECT * FROM (SELECT * FROM secrets) AS s", not_allowlisted("secrets")),
    ("subquery-in-where", "SELECT * FROM models WHERE model_name IN (SELECT s FROM secrets)",
     not_allowlisted("secrets")),
    ("scalar-subquery", "SELECT (FROM secrets)", not_allowlisted("secrets")),
    ("lateral-join", "SELECT * FROM models, LATERAL (SELECT * FROM secrets) AS s",
     not_allowlisted("secrets")),
    ("union", "SELECT model_name FROM models UNION SELECT s FROM secrets", not_allowlisted("secrets")),
    ("pivot-statement", "PIVOT secrets ON s USING count(*)", not_allowlisted("secrets")),
    # PIVOT ... ORDER BY/LIMIT runs as SELECT * FROM (PIVOT ...) ORDER BY ...: every table
    # inside, and any in the added tail, is still judged
    ("pivot-statement-ordered", "PIVOT secrets ON s USING count(*) ORDER BY 1 LIMIT 1", not_allowlisted("secrets")),
    ("pivot-limit-subquery", "PIVOT results_view ON precision USING count(*) LIMIT (SELECT count(*) FROM secrets)",
     not_allowlisted("secrets")),
    ("unpivot-ordered", "UNPIVOT (SELECT s, s AS t FROM secrets) ON s, t INTO NAME k VALUE v ORDER BY v",
     not_allowlisted("secrets")),
    ("pivot-in-a-cte", "WITH p AS (PIVOT secrets ON s USING count(*)) SELECT * FROM p", not_allowlisted("secrets")),
    ("unpivot-in-a-cte", "WITH p AS (UNPIVOT (SELECT s, s AS t FROM secrets) ON s, t INTO NAME k VALUE v) SELECT * FROM p",
     not_allowlisted("secrets")),
    ("pivot-cte-alias-named-like-a-cte",
     "WITH t AS (SELECT 1 AS v), p AS (PIVOT (SELECT name FROM t, pg_settings AS t) ON name) SELECT * FROM p",
     not_allowlisted("pg_settings")),
    ("pivot-ordered-alias-named-like-a-cte",
     "PIVOT (WITH t AS (SELECT 1 AS v) SELECT name FROM t, pg_settings AS t) ON name ORDER BY 1",
     not_allowlisted("pg_settings")),
    # ... judged by the real name, whatever the alias: DuckDB binds "pg_settings AS t" to
    # the catalog even next to a CTE named t (this returned DuckDB's settings)
    ("alias-named-like-a-cte", "WITH t AS (SELECT 1 AS v) SELECT name, setting FROM t CROSS JOIN pg_settings AS t",
     not_allowlisted("pg_settings")),
    ("alias-duckdb-databases", "WITH t AS (SELECT 1 AS v) SELECT * FROM t, duckdb_databases AS t",
     not_allowlisted("duckdb_databases")),
    ("alias-duckdb-tables", "WITH t AS (SELECT 1 AS v) SELECT * FROM t JOIN duckdb_tables AS t ON true",
     not_allowlisted("duckdb_tables")),
    ("alias-pg-proc", "WITH t AS (SELECT 1 AS v) SELECT * FROM t CROSS JOIN pg_proc t", not_allowlisted("pg_proc")),
    ("alias-secret-table", "WITH t AS (SELECT 1 AS v) SELECT * FROM t, secrets t", not_allowlisted("secrets")),
    ("alias-in-subquery", "WITH t AS (SELECT 1 AS v) SELECT * FROM (SELECT * FROM pg_settings AS t) AS s",
     not_allowlisted("pg_settings")),
    ("alias-in-another-cte", "WITH t AS (SELECT 1 AS v), u AS (SELECT * FROM pg_settings AS t) SELECT * FROM u",
     not_allowlisted("pg_settings")),
    ("alias-quoted", 'WITH t AS (SELECT 1 AS v) SELECT * FROM t, "pg_settings" AS "t"', not_allowlisted("pg_settings")),
    ("alias-in-recursive-cte",
     "WITH RECURSIVE t(v) AS (SELECT 1 UNION ALL SELECT 1 FROM t, pg_settings AS t WHERE false) SELECT * FROM t",
     not_allowlisted("pg_settings")),
    ("alias-named-like-an-allowed-cte", "WITH models AS (SELECT 1 AS v) SELECT * FROM models, secrets AS models",
     not_allowlisted("secrets")),
    ("alias-in-lateral", "WITH t AS (SELECT 1 AS v) SELECT * FROM t, LATERAL (SELECT * FROM duckdb_settings AS t) s",
     not_allowlisted("duckdb_settings")),
    ("alias-in-exists", "WITH t AS (SELECT 1 AS v) SELECT * FROM t WHERE EXISTS (SELECT 1 FROM pg_settings AS t)",
     not_allowlisted("pg_settings")),
    ("alias-in-pivot", "WITH t AS (SELECT 1 AS v) PIVOT (SELECT name FROM pg_settings AS t) ON name",
     not_allowlisted("pg_settings")),
    ("main-qualified-system-view", "SELECT * FROM main.duckdb_tables", not_allowlisted("duckdb_tables")),
    # ... and a CTE may not take the name of a table or view off the allowlist, which
    # DuckDB could bind instead
    ("cte-named-like-a-system-view", "WITH pg_settings AS (SELECT 1 AS v) SELECT * FROM pg_settings",
     same_name_as_the_catalog("pg_settings")),
    ("cte-named-like-a-duckdb-view", "WITH duckdb_tables AS (SELECT 1 AS v) SELECT * FROM duckdb_tables",
     same_name_as_the_catalog("duckdb_tables")),
    ("cte-named-like-a-secret-table", "WITH secrets AS (SELECT 'x' AS s) SELECT * FROM secrets",
     same_name_as_the_catalog("secrets")),
    # DESCRIBE and SUMMARIZE only of what may be queried, and only as the whole statement
    ("describe-secret", "DESCRIBE secrets", not_allowlisted("secrets")),
    ("summarize-secret", "SUMMARIZE secrets", not_allowlisted("secrets")),
    ("summarize-query-of-secret", "SUMMARIZE SELECT * FROM secrets", not_allowlisted("secrets")),
    ("describe-system-view", "DESCRIBE pg_settings", not_allowlisted("pg_settings")),
    ("describe-file", "DESCRIBE '/etc/passwd'", "file paths as tables are not allowed: '/etc/passwd'"),
    ("show-table", "SHOW models", not_a_query("SHOW")),
    # stacked statements and comments hiding one
    ("stacked", "SELECT 1; DROP TABLE models", ONE_STATEMENT),
    ("stacked-selects", "SELECT 1; SELECT 2", ONE_STATEMENT),
    ("after-block-comment", "SELECT 1 /* harmless */; DROP TABLE models", ONE_STATEMENT),
    ("after-line-comment", "SELECT 1 -- harmless\n; DELETE FROM models", ONE_STATEMENT),
    ("behind-comment", "/* just a comment */ DROP TABLE models", not_a_query("DROP")),
    ("comment-closing-trick", "SELECT 1 /* */ ; DROP TABLE models /* */", ONE_STATEMENT),
    # size and nesting
    ("very-long", LONG_QUERY,
     f"query is too long: {len(LONG_QUERY):,} characters (at most {MAX_QUERY_LENGTH:,})"),
    ("deep-parentheses", "SELECT " + "(" * 1000 + "1" + ")" * 1000, TOO_DEEP),
    ("deep-subqueries", "SELECT * FROM " + "(SELECT * FROM " * 70 + "models" + ")" * 70, TOO_DEEP),
    ("deep-without-parentheses", "SELECT " + "NOT " * 3000 + "TRUE", TOO_DEEP),
    # look-alikes
    # A look-alike word is no statement at all: a syntax error, refused before anything parses it.
    ("cyrillic-o-in-drop", "DR\u041eP TABLE models", no_statement("DR\u041eP")),
    ("fullwidth-drop", "\uff24\uff32\uff2f\uff30 TABLE models", no_statement("\uff24\uff32\uff2f\uff30")),
    ("cyrillic-o-in-table", "SELECT * FROM m\u043edels", not_allowlisted("m\u043edels")),
    ("cyrillic-a-in-function", "SELECT re\u0430d_text('x')", "function re\u0430d_text is not allowed"),
    ("mixed-case-function", "SELECT * FROM ReAd_CsV('x.csv')", "table function read_csv is not allowed"),
    ("mixed-case-table", "sElEcT * fRoM SeCrEtS", not_allowlisted("SeCrEtS")),
    # parameters only by name
    ("question-mark", "SELECT * FROM models WHERE model_id = ?", POSITIONAL),
    ("numbered", "SELECT * FROM models WHERE model_id = $1", POSITIONAL),
]


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory):
    db = make_benchmark_db(tmp_path_factory.mktemp("hostile") / "bench.duckdb")
    yield db
    SQL_POOL.wait_idle()  # a query answered at its deadline may still be stopping
    db.close()


@pytest.fixture(scope="module")
def pristine(shared_db):
    return database_fingerprint(shared_db)


def test_the_whole_hostile_corpus_in_a_row_is_refused_and_leaves_the_connection_as_it_was(shared_db, pristine):
    """At least sixty distinct attacks, sent one after another on one connection as an attacker
    would: every one is refused with its reason, none echoes the secret, and afterwards the
    database, DuckDB's settings and an allowed query's answer are what they were before."""
    assert len(HOSTILE) >= 60 and len({name for name, _, _ in HOSTILE}) == len(HOSTILE)
    settings = "SELECT name, value FROM duckdb_settings() ORDER BY name"
    settings_before = shared_db.cursor().execute(settings).fetchall()
    allowed = "SELECT model_name FROM models ORDER BY model_id"
    answer_before = run_guarded_query(shared_db, allowed, allowed_tables=ALLOWED_QUERY_TABLES).rows
    reasons = {}
    for name, sql, reason in HOSTILE:
        with pytest.raises(QueryRefused) as refused:
            run_guarded_query(shared_db, sql, allowed_tables=ALLOWED_QUERY_TABLES)
        assert refused.value.reason == reason, name
        assert "TOPSECRET" not in str(refused.value), name
        reasons[name] = refused.value.reason
    assert len(set(reasons.values())) >= 30  # the corpus covers many different checks
    assert database_fingerprint(shared_db) == pristine
    assert shared_db.cursor().execute(settings).fetchall() == settings_before
    assert run_guarded_query(shared_db, allowed, allowed_tables=ALLOWED_QUERY_TABLES).rows == answer_before


@pytest.mark.parametrize(("sql", "reason"), [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_hostile_query_is_refused_with_its_reason(shared_db, pristine, sql, reason):
    with pytest.raises(QueryRefused) as refused:
        run_guarded_query(shared_db, sql, allowed_tables=ALLOWED_QUERY_TABLES)
    assert refused.value.reason == reason
    assert database_fingerprint(shared_db) == pristine


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM models\uff1bDROP TABLE models",  # fullwidth semicolon
        "\uff33\uff25\uff2c\uff25\uff23\uff34 * FROM secrets",  # fullwidth SELECT
        "SELECT * FROM models WHERE model_name = 'x\u2019; DROP TABLE models; --'",  # curly quote
        "SELECT * FROM models \u037e DROP TABLE models",  # Greek question mark, looks like ';'
    ],
)
def test_unicode_look_alikes_of_separators_are_refused_or_harmless(shared_db, pristine, sql):
    try:
        result = run_guarded_query(shared_db, sql, allowed_tables=ALLOWED_QUERY_TABLES)
    except QueryRefused:
        pass
    else:
        assert "TOPSECRET" not in repr(result.rows)
    assert database_fingerprint(shared_db) == pristine


def test_parse_errors_are_refusals_too(shared_db):
    with pytest.raises(QuerySyntaxError):
        run_guarded_query(shared_db, "SELECT FROM WHERE", allowed_tables=ALLOWED_QUERY_TABLES)


# What DuckDB binds is checked too, so the allowlist holds even where the parser-level
# checks are skipped: execute_read_only runs raw SQL, with only the plan check.
DUCKDB_BINDS = [
    ("WITH t AS (SELECT 1 AS v) SELECT name, setting FROM t CROSS JOIN pg_settings AS t",
     "DuckDB would read table function duckdb_settings, which is not allowed"),
    ("SELECT * FROM duckdb_databases", "DuckDB would read table function duckdb_databases, which is not allowed"),
    ("SELECT * FROM duckdb_tables()", "DuckDB would read table function duckdb_tables, which is not allowed"),
    ("SELECT * FROM pg_proc", "DuckDB would read table function duckdb_schemas, which is not allowed"),
    ("SELECT * FROM information_schema.tables", "DuckDB would read table function duckdb_views, which is not allowed"),
    ("SELECT * FROM range(3)", "DuckDB would read table function range, which is not allowed"),
    ("SELECT * FROM secrets", f"DuckDB would read table hostile.main.secrets, which is not in the allowlist: {ALLOWLIST}"),
    # Answered from statistics, so the physical plan has no scan; the binder's plan has one.
    ("SELECT count(*) FROM secrets", f"DuckDB would read table hostile.main.secrets, which is not in the allowlist: "
                                     f"{ALLOWLIST}"),
    ("SELECT * FROM (SELECT * FROM secrets) WHERE false",
     f"DuckDB would read table hostile.main.secrets, which is not in the allowlist: {ALLOWLIST}"),
    # A PIVOT statement cannot be serialised: the physical plan is checked instead.
    ("PIVOT secrets ON s USING count(*)",
     f"DuckDB would read table hostile.main.secrets, which is not in the allowlist: {ALLOWLIST}"),
    ("SELECT * FROM (PIVOT secrets ON s USING count(*)) ORDER BY 1 LIMIT 1",
     f"DuckDB would read table hostile.main.secrets, which is not in the allowlist: {ALLOWLIST}"),
]


@pytest.fixture(scope="module")
def plan_db(tmp_path_factory):
    db = make_benchmark_db(tmp_path_factory.mktemp("plan") / "hostile.duckdb")
    yield db
    SQL_POOL.wait_idle()  # a query answered at its deadline may still be stopping
    db.close()


@pytest.mark.parametrize(("sql", "reason"), DUCKDB_BINDS, ids=[sql[:40] for sql, _ in DUCKDB_BINDS])
def test_what_duckdb_binds_is_checked_against_the_allowlist(plan_db, sql, reason):
    with pytest.raises(QueryRefused) as refused:
        execute_read_only(plan_db, sql, check_plan=plan_checker(frozenset(ALLOWED_QUERY_TABLES)))
    assert refused.value.reason == reason


@pytest.mark.parametrize(
    "sql",
    ["SELECT * FROM results_view", "PIVOT results_view ON precision USING count(*)", "SUMMARIZE results_view",
     "SELECT * FROM unnest([1, 2]) AS t(x)", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r "
     "WHERE n < 3) SELECT * FROM r, (VALUES (1)) v(x)"],
)
def test_what_duckdb_binds_for_allowed_queries_passes_the_plan_check(plan_db, sql):
    execute_read_only(plan_db, sql, check_plan=plan_checker(frozenset(ALLOWED_QUERY_TABLES)))


def test_the_guard_checks_the_plan_even_if_its_parser_checks_were_fooled(shared_db, monkeypatch):
    # As if the scope analysis had again taken pg_settings AS t for the CTE t.
    bypass = "WITH t AS (SELECT 1 AS v) SELECT name, setting FROM t CROSS JOIN pg_settings AS t"
    monkeypatch.setattr(sql_guard, "inspect_query", lambda sql, *_, **__: sql_guard.CheckedQuery(sql, frozenset()))
    with pytest.raises(QueryRefused) as refused:
        run_guarded_query(shared_db, bypass, allowed_tables=ALLOWED_QUERY_TABLES)
    assert refused.value.reason == "DuckDB would read table function duckdb_settings, which is not allowed"
