"""Property: any SQL built from hostile and benign fragments is either refused or runs,
and either way the database is unchanged and the guard never fails in any other way."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.schema import ALLOWED_QUERY_TABLES
from storage.sql_execution import SQL_POOL
from storage.sql_guard import QueryFailed, QueryRefused, QueryTimeout, run_guarded_query
from test_sql_guard import database_fingerprint, make_benchmark_db

BENIGN = [
    "SELECT", "*", "model_name", "count(*)", "FROM", "models", "performance_results", "results_view",
    "WHERE", "1 = 1", "batch_size > 1", "(", ")", ",", "UNION ALL", "JOIN", "ON", "TRUE", "LIMIT 3",
    "ORDER BY 1", "GROUP BY 1", "AS x", "WITH x AS (SELECT 1 AS a)", "x", "'text'", "$model", "VALUES (1)",
    "list_avg(samples_ms)", "unnest(samples_ms)",
]
HOSTILE = [
    "DROP TABLE models", "DELETE FROM performance_results", "INSERT INTO models (model_name) VALUES ('evil')",
    "UPDATE models SET model_name = 'evil'", "CREATE TABLE evil (a INT)", "ALTER TABLE models RENAME TO evil",
    "TRUNCATE test_runs", ";", "--", "/*", "*/", "'", '"', "\n", "COPY models TO 'out.csv'",
    "ATTACH 'evil.duckdb' AS evil", "CHECKPOINT", "SET threads = 1", "PRAGMA version",
    "CALL pragma_version()", "read_csv('x.csv')", "'/etc/passwd'", "secrets", "schema_version",
    "nextval('seq_models')", "INSTALL httpfs", "LOAD httpfs", "BEGIN", "COMMIT", "ROLLBACK",
    "RETURNING *", "EXPORT DATABASE 'dump'", "information_schema.tables", "query('SELECT 1')",
    "current_setting('threads')", "DR\u041eP", "\uff1b",
]

# Most soups start like a query, so that plenty of them get past the first checks.
fragment_soup = st.tuples(
    st.sampled_from(
        ["", "SELECT", "SELECT * FROM models", "FROM models", "WITH x AS (SELECT 1 AS a) SELECT"]
    ),
    st.lists(st.sampled_from(BENIGN + HOSTILE), min_size=1, max_size=12),
).map(lambda parts: " ".join([parts[0], *parts[1]]))
shaped_query = st.builds(
    "SELECT {} FROM {} {}".format,
    st.sampled_from(["*", "model_name", "count(*)", "s", "read_text('x')", "(SELECT s FROM secrets)"]),
    st.sampled_from(["models", "results_view", "secrets", "'x.csv'", "glob('*')", "(DELETE FROM models)"]),
    st.sampled_from(["", "; DROP TABLE models", "-- ; DROP TABLE models", "/* */ ; DELETE FROM models",
                     "WHERE model_name = $model", "UNION SELECT * FROM secrets", "LIMIT 1"]),
)


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory):
    # One database for every example, so a change any example made would still be
    # there for the fingerprint comparison of the next one.
    db = make_benchmark_db(tmp_path_factory.mktemp("property") / "bench.duckdb")
    yield db
    SQL_POOL.wait_idle()  # a query answered at its deadline may still be stopping
    db.close()


@pytest.fixture(scope="module")
def pristine(shared_db):
    return database_fingerprint(shared_db)


@settings(max_examples=200, deadline=None)
@given(sql=st.one_of(fragment_soup, shaped_query))
def test_random_sql_is_refused_or_runs_without_changing_the_database(shared_db, pristine, sql):
    params = {"model": "bert-tiny"} if "$model" in sql else None
    try:
        result = run_guarded_query(
            shared_db, sql, allowed_tables=ALLOWED_QUERY_TABLES, params=params, timeout_s=2.0
        )
    except (QueryRefused, QueryFailed, QueryTimeout) as stopped:
        assert stopped.reason
    else:
        assert "TOPSECRET" not in repr(result.rows)
    assert database_fingerprint(shared_db) == pristine
