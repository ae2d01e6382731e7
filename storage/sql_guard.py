"""The guard in front of custom SQL: parse, refuse anything but one read-only query over
the allowlisted tables, bound what it may build, then run sqlglot's regenerated SQL in
the read-only sandbox.

Defence in depth: the checks here give clear refusals, but the boundary that holds if
they miss something is DuckDB itself (external access off, configuration locked, a
READ ONLY transaction, a memory limit; see storage.sql_execution and storage.database).

Policy:
- exactly one statement, and it is a query: SELECT, WITH, a set operation, VALUES,
  DuckDB's PIVOT/UNPIVOT statement, or DESCRIBE/SUMMARIZE of an allowed table or query;
  a PIVOT/UNPIVOT statement followed by ORDER BY, LIMIT or OFFSET (which sqlglot cannot
  parse) is read as ``SELECT * FROM (PIVOT ...) ORDER BY ...``, then judged as any query;
- what the user typed must parse in DuckDB's own parser too, so malformed SQL that
  sqlglot would quietly repair into another query is a syntax error, with its place;
- every table is judged by its real name, whatever its alias: a plain name on the
  allowlist, or ``main.<name>``, or a CTE that sqlglot's scope analysis resolved by that
  name (so neither a CTE named like a table nor an alias named like a CTE can hide a
  table). A CTE may not share its name with a catalog table or view off the allowlist,
  since then sqlglot and DuckDB could bind the name differently;
- what DuckDB binds is checked too: before the query runs, every scan in DuckDB's own
  plan must read an allowlisted table (or a CTE, VALUES, UNNEST);
- no table functions at all in FROM (``read_csv``, ``glob``, ``range``, ...), no string
  paths as tables; UNNEST of a list is the only table-producing construct allowed;
- functions: those sqlglot models (standard scalar, aggregate and window functions),
  minus the ones that reveal the server or touch files and sequences, plus an explicit
  list of DuckDB functions sqlglot does not model. Anything else is refused by name;
- functions that build a list or string in one call (which interrupt() cannot stop
  midway, and whose memory DuckDB's memory limit does not count) are bounded in the SQL
  that runs, after sqlglot's rewrites: literal sizes over the limit are refused, computed
  ones are checked at run time (``repeat(x, n)`` runs as ``repeat(x, CASE WHEN n > limit
  THEN error('repeat(): <n> times is over the limit ...') WHEN NOT n IS NULL THEN least(n,
  limit) END)``: over the limit the query fails saying so, never a clamped, wrong answer),
  so are growing replacements and the concatenations of a recursive CTE, and none of them
  may run inside a lambda;
- named parameters (``$model``) only, bound by DuckDB, never interpolated;
- the outermost SELECT's unaliased columns keep the names DuckDB gives the query as typed
  (``list(i)``, not sqlglot's ``array_agg(i)``), read off DuckDB's parser.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import duckdb
import msgspec
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, SqlglotError, TokenError
from sqlglot.optimizer.scope import Scope, traverse_scope
from sqlglot.tokens import Token, TokenType

from storage.sql_execution import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_CELL_BYTES,
    DEFAULT_ROW_CAP,
    DEFAULT_TIMEOUT_S,
    NON_FINITE,
    SQL_POOL,
    QueryFailed,
    QueryPlan,
    QueryResult,
    QueryTimeout,
    SqlBusy,
    SqlPool,
    execute_read_only,
    numbers_for_charts,
)

__all__ = [
    "NON_FINITE",
    "ParameterRefused",
    "QueryFailed",
    "QueryRefused",
    "QueryResult",
    "QuerySyntaxError",
    "QueryTimeout",
    "SqlBusy",
    "SqlPool",
    "check_query",
    "numbers_for_charts",
    "run_guarded_query",
    "run_guarded_query_async",
    "QueryColumn",
    "QueryTable",
    "query_schema",
]

DIALECT = "duckdb"
MAX_QUERY_LENGTH = 100_000
MAX_NESTING_DEPTH = 64

# One call that builds a list or string cannot be interrupted midway, and DuckDB's
# memory limit counts none of it (it only covers the buffer manager). A call is also run
# for a whole vector of 2,048 rows at once, and a streaming answer keeps a few vectors in
# flight. Measured on DuckDB 2.0: generate_series of a computed 1,000,000 per row held
# 17 GB for 118 s; two queries of a computed series per row over 100,000 rows grew the
# server by 1.3 GB at 10,000 elements, 830 MB at 4,096 and 220 MB at 1,024; a constant
# 1,000,000-character string concatenated onto each of 3,000 rows held 2 GB.
MAX_GENERATED_ELEMENTS = 1_000_000  # a list whose size is literal: built once, then constant
MAX_ROW_ELEMENTS = 1_024  # a list whose size is computed, built for every row: 16 MB a vector
MAX_GENERATED_CHARACTERS = 10_000  # a string, literal or computed: 20 MB a vector

_QUERY_KINDS = "only queries (SELECT, WITH, set operations, VALUES, PIVOT, DESCRIBE, SUMMARIZE) may run"
_QUERY_STARTS = {
    TokenType.SELECT, TokenType.WITH, TokenType.FROM, TokenType.VALUES,
    TokenType.L_PAREN, TokenType.PIVOT, TokenType.UNPIVOT, TokenType.DESCRIBE, TokenType.SUMMARIZE,
}
_OPENING = {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE}
_CLOSING = {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE}

# Statements DuckDB (or sqlglot) accepts inside a query, e.g. FROM (DESCRIBE t) or a
# CTE holding INSERT ... RETURNING. DESCRIBE and SUMMARIZE are allowed only as the
# whole statement.
_NESTED_STATEMENTS = (exp.DML, exp.DDL, exp.Command, exp.Describe, exp.Summarize, exp.Show, exp.Pragma)
_INSPECTIONS = (exp.Describe, exp.Summarize)

# Known to sqlglot, but in DuckDB they reveal the server (user, catalog, version), read
# files or advance sequences.
_SYSTEM_FUNCTIONS = (
    exp.ReadCSV, exp.ReadParquet, exp.NextValueFor,
    exp.CurrentUser, exp.CurrentUserId, exp.SessionUser, exp.CurrentRole,
    exp.CurrentCatalog, exp.CurrentDatabase, exp.CurrentSchema, exp.CurrentSchemas,
    exp.CurrentSession, exp.CurrentStatement, exp.CurrentTransaction, exp.CurrentVersion,
)

# DuckDB functions sqlglot has no class for (it parses them as exp.Anonymous) that are
# pure computations analysts want. Any other unmodelled name is refused: that is what
# keeps out current_setting, getenv, read_text, query, nextval, sleep_ms, write_log...
_EXTRA_FUNCTIONS = frozenset("""
    age now date_part datepart date_sub yearweek century decade millennium era isoyear julian weekday
    microsecond millisecond nanosecond epoch_ns epoch_us days_in_month timezone timezone_hour timezone_minute
    make_timestamp_ms make_timestamp_ns make_timestamptz try_strptime transaction_timestamp
    get_current_timestamp current_localtime to_seconds to_minutes to_hours to_weeks to_months to_quarters
    to_years to_decades to_centuries to_millennia to_milliseconds to_microseconds
    mean product entropy mad sem geomean geometric_mean histogram kurtosis_pop fsum favg sumkahan kahan_sum
    reservoir_quantile arbitrary weighted_avg wavg arg_max_null arg_min_null count_star
    list_extract list_element list_slice list_sort list_reverse_sort list_reverse list_unique list_position
    list_indexof list_cat list_apply list_reduce list_aggregate list_aggr list_sum list_avg list_median
    list_mode list_stddev_samp list_stddev_pop list_var_samp list_var_pop list_count list_first list_last
    list_product list_kurtosis list_skewness list_mad list_sem list_entropy list_histogram list_grade_up
    list_has_all list_zip list_select list_where list_resize list_dot_product list_inner_product
    list_cosine_similarity list_any_value list_bool_and list_bool_or list_string_agg
    list_approx_count_distinct list_pack
    array_extract array_apply array_transform array_reduce array_unique array_aggregate array_aggr
    array_indexof array_select array_where array_zip array_value array_resize array_cosine_similarity
    array_distance array_dot_product array_inner_product array_grade_up array_has_any
    array_pop_back array_pop_front array_push_back array_push_front element_at cardinality
    row struct_keys struct_values struct_extract_at struct_has struct_insert struct_update struct_concat
    struct_contains struct_position struct_indexof
    map_values map_extract map_extract_value map_entries map_contains map_concat
    to_json json_value json_array_length json_valid json_exists json_contains json_structure
    json_group_array json_group_object json_pretty json_quote
    bit_count even fmod gamma lgamma gcd lcm round_even roundbankers nextafter signbit isfinite
    add subtract multiply divide fdiv bin unbin to_base equi_width_bins
    strlen ord prefix suffix printf hash md5_number like_escape strip_accents nfc_normalize jaccard
    jaro_similarity hamming damerau_levenshtein mismatches bar format_bytes formatreadablesize
    formatreadabledecimalsize octet_length base64 regexp_split_to_array regexp_escape left_grapheme
    right_grapheme length_grapheme substring_grapheme uuidv4 uuidv7
    union_extract union_tag union_value enum_range enum_first enum_last enum_code
    regexp_split_to_table error
""".split())

_WORD = re.compile(r"[^\W\d]\w*")

# Characters no allowlisted table name has, but file names and URLs do.
_PATH_CHARACTERS = re.compile(r"[./\\:*?~]")

# Names DuckDB's catalog always holds (system views such as duckdb_tables, pg_settings):
# a CTE may not take one, even when the guard is not told the database's own names.
_CATALOG_PREFIXES = ("duckdb_", "pg_", "sqlite_", "information_schema")

# What DuckDB's plan may read: scans of allowlisted tables, and the operators that
# produce rows from the query itself (constants, VALUES, CTEs, UNNEST). The physical plan
# is the fallback where DuckDB cannot serialise the binder's (logical) plan.
_PLAN_LEAVES = frozenset({
    "SEQ_SCAN", "TABLE_SCAN", "DUMMY_SCAN", "EMPTY_RESULT", "COLUMN_DATA_SCAN", "CHUNK_SCAN",
    "DELIM_SCAN", "CTE_SCAN", "REC_CTE_SCAN", "REC_KEY_CTE_SCAN", "UNNEST", "EXPRESSION_SCAN",
})
_PLAN_FUNCTIONS = frozenset({"UNNEST", "SEQ_SCAN", "TABLE_SCAN"})
_PLAN_FUNCTIONS_LOGICAL = frozenset({"unnest"})


class QueryRefused(Exception):
    """The guard refused the query; ``reason`` names what was refused and why."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class QuerySyntaxError(QueryRefused):
    """The query does not parse; ``reason`` carries the parser's line and column."""


class ParameterRefused(QueryRefused):
    """A $parameter the query uses without a value (``missing``), or a value for one it does not
    use; ``name`` is the parameter's, without the $, so that each caller can say how a value is
    passed there (``reason`` says it for the API's ``params``)."""

    def __init__(self, name: str, *, missing: bool):
        self.name = name
        self.missing = missing
        super().__init__(f"parameter ${name} has no value: pass it in params" if missing
                         else f"parameter ${name} is not used by the query")


@dataclass(frozen=True)
class CheckedQuery:
    sql: str  # what actually runs: sqlglot's regeneration, comments dropped, sizes bounded
    parameters: frozenset[str]  # names of the $parameters it uses
    bind_sql: str | None = None  # the same with NULL for each parameter and number, for DuckDB's binder


def check_query(
    sql: str,
    allowed_tables: Iterable[str],
    *,
    max_length: int = MAX_QUERY_LENGTH,
    max_depth: int = MAX_NESTING_DEPTH,
    catalog_names: Iterable[str] = (),
) -> str:
    """The SQL that would run for ``sql`` (DuckDB dialect), or QueryRefused saying why not."""
    return inspect_query(
        sql, allowed_tables, max_length=max_length, max_depth=max_depth, catalog_names=catalog_names
    ).sql


def run_guarded_query(
    connection,
    sql: str,
    *,
    allowed_tables: Iterable[str],
    params: dict[str, Any] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    row_cap: int = DEFAULT_ROW_CAP,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_cell_bytes: int = DEFAULT_MAX_CELL_BYTES,
    pool: SqlPool | None = SQL_POOL,
    _started: float | None = None,
) -> QueryResult:
    """Check ``sql``, bind ``params`` to its $parameters and run it read-only, in a slot
    of ``pool`` (None: here, on the calling thread, without a slot).

    ``timeout_s`` bounds the whole answer, the wait for a slot included: in a pool, the
    answer comes by then even while DuckDB is inside one call it cannot interrupt. Raises
    QueryRefused (QuerySyntaxError for a parse error), QueryFailed when DuckDB rejects it
    while running, QueryTimeout past ``timeout_s``, SqlBusy when no slot came free.
    """
    started = time.perf_counter() if _started is None else _started
    run = _guarded_run(connection, sql, allowed_tables, params, timeout_s, row_cap, max_bytes, max_cell_bytes,
                       started)
    if pool is None:
        return run()
    return pool.run(run, deadline=started + timeout_s, late=lambda: QueryTimeout(timeout_s))


async def run_guarded_query_async(
    connection,
    sql: str,
    *,
    allowed_tables: Iterable[str],
    params: dict[str, Any] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    row_cap: int = DEFAULT_ROW_CAP,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_cell_bytes: int = DEFAULT_MAX_CELL_BYTES,
    pool: SqlPool = SQL_POOL,
) -> QueryResult:
    """run_guarded_query for an event loop: waits for a slot of ``pool`` without holding a
    thread, then checks and runs the query on the pool's own threads.

    The answer comes by the time limit (plus a short grace) even when DuckDB is inside
    one call it cannot interrupt: the caller then gets QueryTimeout at once, and the
    query's slot stays taken until DuckDB has really stopped.
    """
    started = time.perf_counter()
    run = _guarded_run(connection, sql, allowed_tables, params, timeout_s, row_cap, max_bytes, max_cell_bytes,
                       started)
    return await pool.run_async(run, deadline=started + timeout_s, late=lambda: QueryTimeout(timeout_s))


def _guarded_run(connection, sql, allowed_tables, params, timeout_s, row_cap, max_bytes, max_cell_bytes,
                 started) -> Callable[[], QueryResult]:
    allowed = frozenset(name.lower() for name in allowed_tables)

    def run() -> QueryResult:
        checked = inspect_query(sql, allowed, catalog_names=catalog_names(connection))
        bound = _bind(checked.parameters, params or {})
        return execute_read_only(
            connection, checked.sql, params=bound, timeout_s=timeout_s, row_cap=row_cap, max_bytes=max_bytes,
            max_cell_bytes=max_cell_bytes, check_plan=plan_checker(allowed, bind_sql=checked.bind_sql),
            started=started,
        )

    return run


class QueryColumn(msgspec.Struct, frozen=True):
    name: str
    type: str  # DuckDB's name for it: VARCHAR, DOUBLE, DOUBLE[], TIMESTAMP WITH TIME ZONE...


class QueryTable(msgspec.Struct, frozen=True):
    """One table or view a guarded query may read, with its columns in their order."""

    name: str
    kind: str  # "table" or "view"
    columns: list[QueryColumn]


def query_schema(connection, allowed_tables: Iterable[str]) -> list[QueryTable]:
    """The allowlisted tables and views of ``connection``'s main schema as DuckDB's catalog
    has them (so a migration's new column shows at once), by name; names on the allowlist
    that the database lacks are left out."""
    allowed = sorted({name.lower() for name in allowed_tables})
    cursor = connection.cursor()
    try:
        rows = cursor.execute(
            """SELECT c.table_name, v.view_name IS NOT NULL AS is_view, c.column_name, c.data_type
               FROM duckdb_columns() AS c
               LEFT JOIN duckdb_views() AS v
                 ON v.database_name = c.database_name AND v.schema_name = c.schema_name
                AND v.view_name = c.table_name
               WHERE c.database_name = current_database() AND c.schema_name = 'main'
                 AND lower(c.table_name) IN (SELECT unnest($allowed))
               ORDER BY c.table_name, c.column_index""",
            {"allowed": allowed},
        ).fetchall()
    finally:
        cursor.close()
    tables: dict[str, QueryTable] = {}
    for table, is_view, column, data_type in rows:
        entry = tables.setdefault(table, QueryTable(table, "view" if is_view else "table", []))
        entry.columns.append(QueryColumn(column, data_type))
    return list(tables.values())


def catalog_names(connection) -> frozenset[str]:
    """Every table and view name in ``connection``'s catalog, DuckDB's own views included."""
    cursor = connection.cursor()
    try:
        rows = cursor.execute(
            "SELECT table_name FROM duckdb_tables() UNION SELECT view_name FROM duckdb_views()"
        ).fetchall()
    finally:
        cursor.close()
    return frozenset(name.lower() for (name,) in rows)


def plan_checker(allowed: frozenset[str], *, bind_sql: str | None = None) -> Callable[[QueryPlan], None]:
    """A check of what DuckDB binds the query to, whatever its SQL says: every scan must
    read an allowlisted table of the main schema (or UNNEST, a CTE, VALUES).

    ``bind_sql`` is the same query with NULL for each parameter and number, which DuckDB
    plans without values and without folding big constants; tables bind the same whatever
    the values are. Where DuckDB cannot serialise that plan (a PIVOT statement, a function that
    needs a literal), the physical plan of the query itself is checked instead.
    """

    def check(plan: QueryPlan) -> None:
        database = plan.database
        logical = plan.logical(bind_sql)
        if logical is not None:
            _check_logical_plan(logical, database, allowed)
        else:
            _check_physical_plan(plan.physical(), database, allowed)

    return check


def _check_logical_plan(plan: dict, database: str, allowed: frozenset[str]) -> None:
    stack: list = [plan]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        stack.extend(value for value in node.values() if isinstance(value, (dict, list)))
        if node.get("type") != "LOGICAL_GET":
            continue
        function = ".".join((node.get("qname") or {}).get("path") or ["?"]).lower()
        if function == "seq_scan":
            data = node.get("function_data") or {}
            _check_planned_table(".".join(str(data.get(key)) for key in ("catalog", "schema", "table")), database,
                                 allowed)
        elif function.rsplit(".", 1)[-1] not in _PLAN_FUNCTIONS_LOGICAL:
            raise QueryRefused(f"DuckDB would read table function {function.rsplit('.', 1)[-1]}, which is not allowed")


def _check_planned_table(table: str, database: str, allowed: frozenset[str]) -> None:
    parts = table.split(".")
    catalog, schema, name = parts if len(parts) == 3 else (None, None, table)
    if catalog != database or schema != "main" or name.lower() not in allowed:
        raise QueryRefused(f"DuckDB would read table {table}, which is not in the allowlist: "
                           f"{', '.join(sorted(allowed))}")


def _check_physical_plan(plan: list[dict], database: str, allowed: frozenset[str]) -> None:
    stack = list(plan)
    while stack:
        node = stack.pop()
        children = node.get("children") or []
        stack.extend(children)
        name = str(node.get("name", "")).strip().upper()
        info = node.get("extra_info")
        info = info if isinstance(info, dict) else {}
        table = info.get("Table")
        if table is not None:
            _check_planned_table(str(table), database, allowed)
        function = info.get("Function")
        if function is not None and str(function).upper() not in _PLAN_FUNCTIONS:
            raise QueryRefused(f"DuckDB would read table function {str(function).lower()}, which is not allowed")
        if not children and name not in _PLAN_LEAVES:
            raise QueryRefused(f"DuckDB would read {name.lower()}, which is not allowed")
        if name in ("SEQ_SCAN", "TABLE_SCAN") and table is None:
            raise QueryRefused(f"DuckDB would read {name.lower()} of an unnamed table, which is not allowed")


def inspect_query(
    sql: str,
    allowed_tables: Iterable[str],
    *,
    max_length: int = MAX_QUERY_LENGTH,
    max_depth: int = MAX_NESTING_DEPTH,
    catalog_names: Iterable[str] = (),
) -> CheckedQuery:
    """The checked, bounded query that would run and the parameters it needs; QueryRefused if refused.

    ``catalog_names`` are the database's table and view names: a CTE may not take one that
    is off the allowlist.
    """
    if len(sql) > max_length:
        raise QueryRefused(f"query is too long: {len(sql):,} characters (at most {max_length:,})")
    allowed = frozenset(name.lower() for name in allowed_tables)
    catalog = frozenset(name.lower() for name in catalog_names)
    dialect = Dialect.get_or_raise(DIALECT)
    try:
        tokens = dialect.tokenize(sql)
        _check_statement_shape(tokens, max_depth)
        tokens = _wrap_pivot_tail(tokens)
        statements = [s for s in dialect.parser().parse(tokens, sql) if s is not None]
        root = statements[0]
        _check_duckdb_parses(sql)
        _check_root(root)
        _wrap_pivot_ctes(root)
        _check_tree(root, allowed, catalog)  # refusals in the user's own words
        # What runs is sqlglot's regeneration, which can differ from what was typed
        # (space(n) becomes REPEAT(' ', n)): parse it again, check it again, bound it.
        rewritten = _reparse(dialect, _generate(root))
        parameters = _check_tree(rewritten, allowed, catalog)
        _bound_builders(rewritten)
        _keep_column_names(rewritten, sql)
        final_sql = _generate(rewritten)
        final = _reparse(dialect, final_sql)
        _check_tree(final, allowed, catalog)
        _verify_bounded(final)
        return CheckedQuery(sql=final_sql, parameters=parameters, bind_sql=_bind_only(final))
    except RecursionError:
        raise QueryRefused(f"query is nested too deeply (at most {max_depth} levels)") from None
    except ParseError as error:
        raise QuerySyntaxError(_describe_parse_error(error, sql)) from None
    except TokenError as error:
        raise QuerySyntaxError(_describe_token_error(error, sql)) from None
    except QueryRefused:
        raise
    except Exception as error:  # noqa: BLE001 - sqlglot on odd input must not become a 500
        raise QuerySyntaxError(f"the query could not be analysed: {error}") from None


_PARSER_LOCK = threading.Lock()
_parser: duckdb.DuckDBPyConnection | None = None


def _check_duckdb_parses(sql: str) -> None:
    """What the user typed must parse in DuckDB's own parser too.

    sqlglot quietly repairs some malformed SQL into something else that runs: a
    ``JOIN t ON`` with no condition becomes a cross join, ``max( FROM t`` a subquery,
    ``'x' 'y'`` a concatenation, ``* EXCLUDE FROM`` a plain ``*``. DuckDB refuses each
    (it never sees them: it runs sqlglot's regeneration), so the guard asks DuckDB's parser
    too, and refuses with its words and place.
    """
    message = _duckdb_syntax_error(sql)
    if message is not None:
        raise QuerySyntaxError(message)


def _parser_cursor() -> duckdb.DuckDBPyConnection:
    """A cursor of the private in-memory connection that holds no data, for DuckDB's parser."""
    global _parser
    with _PARSER_LOCK:
        if _parser is None:
            _parser = duckdb.connect(":memory:", config={"enable_external_access": False})
            _parser.execute("SET lock_configuration = true")
        return _parser.cursor()


def _duckdb_syntax_error(sql: str) -> str | None:
    """DuckDB's parser's complaint about ``sql`` in plain words with its line and column, or
    None if it parses. On a private in-memory connection that holds no data: only parsing
    happens there, nothing is bound or run."""
    cursor = _parser_cursor()
    try:
        try:
            cursor.extract_statements(sql)
            return None
        except duckdb.ParserException as error:
            message = _first_line(str(error)).removeprefix("Parser Error: ")
            line_match = re.search(r"^LINE (\d+):", str(error), re.MULTILINE)
        # The place, as a byte offset; json_serialize_sql gives it for queries (not for PIVOT).
        position = cursor.execute(
            "SELECT json_extract_string(j, '$.position') FROM (SELECT json_serialize_sql($sql) AS j)", {"sql": sql}
        ).fetchone()[0]
    finally:
        cursor.close()
    detail = re.sub(r'^syntax error at or near (".*")$', r"unexpected \1", message)
    detail = {"syntax error at end of input": "the query ends too soon"}.get(detail, detail)
    if position is not None and position.isdigit():
        before = sql.encode("utf-8")[:int(position)].decode("utf-8", "ignore")
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        return f"syntax error at line {line}, column {column}: {detail}"
    if line_match:
        return f"syntax error at line {line_match.group(1)}: {detail}"
    return f"syntax error: {detail}"


def _keep_column_names(root: exp.Expression, sql: str) -> None:
    """Aliases each unaliased column of the outermost SELECT (the left-most one of a set
    operation) whose name DuckDB would take from sqlglot's regeneration rather than from
    what was typed, with the name DuckDB gives the typed query (in place): ``list(i)`` stays
    ``list(i)``, not ``array_agg(i)``, and a bounded size does not show its CASE.

    Both names come from DuckDB's parser alone (nothing is bound, as binding would evaluate
    a constant the guard has not bounded yet). A column that a star or COLUMNS(...) expands,
    and any query whose select lists do not line up, are left as they are.
    """
    select = root
    while isinstance(select, exp.SetOperation):
        select = select.this
    if not isinstance(select, exp.Select):
        return
    typed = _duckdb_column_names(sql)
    if typed is None or len(typed) != len(select.expressions):
        return
    regenerated = _duckdb_column_names(_generate(root))
    if regenerated is None or len(regenerated) != len(typed):
        return
    for projection, name, given in zip(list(select.expressions), typed, regenerated, strict=True):
        if name is not None and given is not None and name != given and not isinstance(projection, exp.Alias):
            projection.replace(exp.alias_(projection.copy(), name, quoted=True))


def _duckdb_column_names(sql: str) -> list[str | None] | None:
    """The name DuckDB gives each column of ``sql``'s outermost SELECT (its left-most one in a
    set operation), read off DuckDB's parse of it: the alias, a column's own name, or else the
    expression as DuckDB writes it back. None for a column a star expands; None for all where
    the statement has no such select list (DESCRIBE, PIVOT) or DuckDB cannot say."""
    cursor = _parser_cursor()
    try:
        parsed = json.loads(cursor.execute("SELECT json_serialize_sql($sql)", {"sql": sql}).fetchone()[0])
        if parsed.get("error") or len(parsed.get("statements") or ()) != 1:
            return None
        node = parsed["statements"][0].get("node") or {}
        while node.get("type") == "SET_OPERATION_NODE":  # its columns are named by its first query
            node = node.get("left") or (node.get("children") or [{}])[0]
        if node.get("type") != "SELECT_NODE":
            return None
        names: list[str | None] = []
        written: list[tuple[int, str]] = []  # (index, the expression alone as a SELECT's JSON)
        template = json.loads(cursor.execute("SELECT json_serialize_sql('SELECT 1')").fetchone()[0])
        for index, expression in enumerate(node.get("select_list") or ()):
            if _has_star(expression):
                names.append(None)
            elif expression.get("alias"):
                names.append(expression["alias"])
            elif expression.get("class") == "COLUMN_REF":
                names.append(expression["column_names"][-1])
            else:
                names.append(None)
                template["statements"][0]["node"]["select_list"] = [expression]
                written.append((index, json.dumps(template)))
        if written:
            texts = cursor.execute("SELECT list_transform($json, lambda j: json_deserialize_sql(j))",
                                   {"json": [text for _, text in written]}).fetchone()[0]
            for (index, _), text in zip(written, texts, strict=True):
                names[index] = text.removeprefix("SELECT ") if text.startswith("SELECT ") else None
        return names
    except (duckdb.Error, ValueError, KeyError, TypeError, IndexError):
        return None
    finally:
        cursor.close()


def _has_star(expression: Any) -> bool:
    stack = [expression]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class") == "STAR":
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _bind_only(root: exp.Expression) -> str:
    """The query with NULL for every parameter and number, for DuckDB's binder to plan.

    Tables bind the same whatever the values are, and without the numbers the plan holds
    no folded constants built from them: with them, the plan of one literal
    million-element list was 33 MB of JSON that took 3 s to build and read.
    """
    copy = root.copy()
    for node in list(copy.find_all(exp.Placeholder, exp.Literal)):
        if isinstance(node, exp.Placeholder) or not node.is_string:
            node.replace(exp.Null())
    return _generate(copy)


def _generate(root: exp.Expression) -> str:
    return root.sql(dialect=DIALECT, comments=False)


def _reparse(dialect: Dialect, sql: str) -> exp.Expression:
    try:
        statements = [s for s in dialect.parse(sql) if s is not None]
    except SqlglotError as error:
        raise QueryRefused(f"the query as it would run could not be parsed again: {_first_line(str(error))}") from None
    if len(statements) != 1:
        raise QueryRefused("the query as it would run is not one statement")
    _check_root(statements[0])
    return statements[0]


# DuckDB statements that sqlglot reads as plain words: refused by name, never called typos.
_STATEMENT_WORDS = frozenset(
    "ABORT ALTER ANALYZE ATTACH BEGIN CALL CHECKPOINT COMMENT COMMIT COPY CREATE DEALLOCATE DELETE DETACH DROP END "
    "EXECUTE EXPLAIN EXPORT FORCE GRANT IMPORT INSERT INSTALL LOAD MERGE PRAGMA PREPARE REPLACE RESET REVOKE ROLLBACK "
    "SET SHOW START TRUNCATE UPDATE UPSERT USE VACUUM".split()
)


def _check_statement_shape(tokens: list[Token], max_depth: int) -> None:
    """One statement that starts like a query, not nested beyond ``max_depth``.

    Done on tokens, before parsing: the parser recurses on nesting, and its fallback
    for unknown statements (exp.Command) would otherwise hide what they are.
    """
    statements = _split_statements(tokens)
    if not statements:
        raise QueryRefused("the query is empty")
    if len(statements) > 1:
        raise QueryRefused("only one statement is allowed")
    first = statements[0]
    if first[0].token_type == TokenType.VAR and first[0].text.upper() not in _STATEMENT_WORDS:
        # A word that starts no statement at all (SELEC) is a typo, not a statement to refuse.
        raise QuerySyntaxError(
            f"syntax error at line {first[0].line}, column {first[0].col - len(first[0].text) + 1}: "
            f"{first[0].text!r} does not start a statement; {_QUERY_KINDS}"
        )
    if first[0].token_type not in _QUERY_STARTS:
        raise QueryRefused(f"{_statement_kind(first)} is not allowed: {_QUERY_KINDS}")
    for previous, token in zip(first, first[1:]):
        # sqlglot would quietly drop the empty item of "a,, b" and run something else.
        if previous.token_type == token.token_type == TokenType.COMMA:
            raise QuerySyntaxError(f"syntax error at line {token.line}, column {token.col}: two commas in a row")
    depth = 0
    for token in first:
        if token.token_type in _OPENING:
            depth += 1
            if depth > max_depth:
                raise QueryRefused(f"query is nested too deeply (at most {max_depth} levels)")
        elif token.token_type in _CLOSING:
            depth -= 1


def _wrap_pivot_ctes(root: exp.Expression) -> None:
    """A CTE whose body is a PIVOT/UNPIVOT statement, as ``SELECT * FROM (PIVOT ...)`` (in
    place): sqlglot's scope analysis cannot traverse the bare statement there, so the CTE's
    name would not resolve and a legitimate query would be refused. The same rows; the
    tables inside are judged as in any subquery."""
    for cte in list(root.find_all(exp.CTE)):
        if isinstance(cte.this, exp.Pivot):
            cte.set("this", exp.select("*").from_(exp.Subquery(this=cte.this.copy())))


_PIVOT_STATEMENTS = {TokenType.PIVOT, TokenType.UNPIVOT}
_QUERY_TAIL = {TokenType.ORDER_BY, TokenType.LIMIT, TokenType.OFFSET}


def _wrap_pivot_tail(tokens: list[Token]) -> list[Token]:
    """DuckDB's PIVOT (or UNPIVOT) statement followed by ORDER BY, LIMIT or OFFSET, which
    sqlglot cannot parse, as the query it means: ``SELECT * FROM (PIVOT ...) ORDER BY ...``.

    Done on tokens, so the guard then parses and judges the whole query as usual (every
    table inside the PIVOT included), and a syntax error still names the place in the
    query as typed: the added tokens take the positions of their neighbours.
    """
    statement = [token for token in tokens if token.token_type != TokenType.SEMICOLON]
    if not statement or statement[0].token_type not in _PIVOT_STATEMENTS:
        return tokens
    depth = 0
    for index, token in enumerate(statement):
        if token.token_type in _OPENING:
            depth += 1
        elif token.token_type in _CLOSING:
            depth -= 1
        elif depth == 0 and token.token_type in _QUERY_TAIL and index > 0:
            break
    else:
        return tokens
    first, last = statement[0], statement[index - 1]

    def added(kind: TokenType, text: str, at: Token) -> Token:
        return Token(kind, text, line=at.line, col=at.col, start=at.start, end=at.end)

    head = [added(TokenType.SELECT, "SELECT", first), added(TokenType.STAR, "*", first),
            added(TokenType.FROM, "FROM", first), added(TokenType.L_PAREN, "(", first)]
    return [*head, *statement[:index], added(TokenType.R_PAREN, ")", last), *statement[index:]]


def _split_statements(tokens: list[Token]) -> list[list[Token]]:
    statements, current = [], []
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            if current:
                statements.append(current)
            current = []
        else:
            current.append(token)
    if current:
        statements.append(current)
    return statements


def _statement_kind(tokens: list[Token]) -> str:
    first = tokens[0].text
    if not _WORD.fullmatch(first):
        return f"a statement starting with {first!r}"
    # "FORCE" only modifies the statement after it (FORCE CHECKPOINT, FORCE INSTALL).
    words = 2 if first.upper() == "FORCE" and len(tokens) > 1 else 1
    return " ".join(token.text.upper() for token in tokens[:words])


def _check_root(root: exp.Expression) -> None:
    if isinstance(root, _INSPECTIONS):
        _check_inspection(root)
        return
    if not isinstance(root, (exp.Query, exp.Values, exp.Pivot)):
        kind = root.name if isinstance(root, exp.Command) else root.key
        raise QueryRefused(f"{kind.upper()} is not allowed: {_QUERY_KINDS}")


def _check_inspection(root: exp.Expression) -> None:
    """DESCRIBE or SUMMARIZE of one table or query, with none of their other forms."""
    kind = root.key.upper()
    target = root.this
    extras = [key for key, value in root.args.items() if key != "this" and value]
    if extras or not isinstance(target, (exp.Table, exp.Query)):
        raise QueryRefused(f"{kind} is allowed only of one table or query, as in {kind} results_view")


def _check_tree(root: exp.Expression, allowed: frozenset[str], catalog: frozenset[str]) -> frozenset[str]:
    """Checks every node of the tree; returns the names of the $parameters used."""
    cte_references = _cte_references(root)
    parameters = _check_nodes(root, allowed, cte_references)
    _check_cte_names(root, allowed, catalog)
    return parameters


def _scoped(root: exp.Expression) -> exp.Expression | None:
    """The part of the tree scope analysis understands: the query itself, or the query a
    DESCRIBE or SUMMARIZE looks at."""
    if isinstance(root, _INSPECTIONS):
        return root.this if isinstance(root.this, exp.Query) else None
    return root


def _cte_references(root: exp.Expression) -> set[int]:
    """ids of the exp.Table nodes whose real name (not their alias) scope analysis resolved
    to a CTE visible where they stand.

    Everything else named in FROM is treated as a real table, so a table the analysis
    did not resolve (or a CTE referenced outside its scope) must be on the allowlist.
    ``pg_settings AS t`` next to a CTE named t is the table pg_settings.
    """
    scoped = _scoped(root)
    if scoped is None:
        return set()
    references = set()
    try:
        scopes = traverse_scope(scoped)
    except SqlglotError as error:
        raise QueryRefused(f"the query's table references could not be analysed: {error}") from None
    for scope in scopes:
        for table in scope.tables:
            if table.db or table.catalog:
                continue  # main.t is the table t, whatever CTE is called t
            if isinstance(scope.cte_sources.get(table.name), Scope):
                references.add(id(table))
    return references


def _check_cte_names(root: exp.Expression, allowed: frozenset[str], catalog: frozenset[str]) -> None:
    """A CTE may not share its name with a catalog table or view off the allowlist: if
    sqlglot and DuckDB ever disagree on which one a reference binds to, the catalog
    object would be read."""
    for cte in root.find_all(exp.CTE):
        name = cte.alias_or_name
        lowered = name.lower()
        if lowered in allowed:
            continue  # either binding is allowed
        if lowered in catalog or lowered.startswith(_CATALOG_PREFIXES):
            raise QueryRefused(f"the CTE name {name} is also a table or view of the database: "
                               "rename the CTE")


def _check_nodes(root: exp.Expression, allowed: frozenset[str], cte_references: set[int]) -> frozenset[str]:
    """Checks every node of the tree; returns the names of the $parameters used."""
    parameters = set()
    for node in _walk(root):
        if isinstance(node, _NESTED_STATEMENTS) and node is not root:
            raise QueryRefused(f"{node.key.upper()} is not allowed inside a query: {_QUERY_KINDS}")
        if isinstance(node, exp.Table):
            _check_table(node, allowed, cte_references)
        elif isinstance(node, exp.Func):
            _check_function(node)
        elif isinstance(node, exp.Placeholder):
            parameters.add(_parameter_name(node))
    return frozenset(parameters)


def _walk(root: exp.Expression) -> Iterator[exp.Expression]:
    # Iterative, so a deep tree cannot exhaust the Python stack here.
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.iter_expressions())


def _check_table(table: exp.Table, allowed: frozenset[str], cte_references: set[int]) -> None:
    if not isinstance(table.this, exp.Identifier):
        raise QueryRefused(f"table function {_function_name(table.this)} is not allowed")
    name = table.name
    if _PATH_CHARACTERS.search(name):
        raise QueryRefused(f"file paths as tables are not allowed: '{name}'")
    if table.catalog or (table.db and table.db.lower() != "main"):
        qualified = ".".join(part for part in (table.catalog, table.db, name) if part)
        raise QueryRefused(f"table {qualified} is not allowed: only tables of the main schema may be queried")
    if id(table) in cte_references or name.lower() in allowed:
        return
    raise QueryRefused(f"table {name} is not in the allowlist: {', '.join(sorted(allowed))}")


def _check_function(function: exp.Func) -> None:
    if isinstance(function, (exp.Anonymous, exp.AnonymousAggFunc)):
        refused = function.name.lower() not in _EXTRA_FUNCTIONS
    else:
        refused = isinstance(function, _SYSTEM_FUNCTIONS)
    if refused:
        raise QueryRefused(f"function {_function_name(function)} is not allowed")
    _check_format(function)
    _check_reduce(function)
    if _builder_kind(function) is not None:
        _check_builder(function)


# --- Functions that build a list or a string in one call -----------------------------

def _builder_kind(function: exp.Expression) -> str | None:
    """What ``function`` builds in one call, if it is one the guard bounds."""
    if isinstance(function, exp.GenerateSeries):
        return "series"
    if isinstance(function, exp.Repeat):
        return "repeat"
    if isinstance(function, exp.Pad):
        return "pad"
    if isinstance(function, exp.Anonymous) and function.name.lower() in ("list_resize", "array_resize"):
        return "resize"
    if isinstance(function, (exp.Replace, exp.RegexpReplace)) and _replacement_grows(function):
        return "replace"
    if _concatenates(function) and _in_recursive_cte(function) and not _error_message(function) and any(
        not isinstance(part, exp.Literal) for part in function.iter_expressions()
    ):
        return "concat"
    return None


def _error_message(node: exp.Expression) -> bool:
    """Whether ``node`` is the message of error(), which raises it: it never becomes a value, so
    a recursive CTE cannot feed it back (the guard's own messages name the size that was over)."""
    parent = node.parent
    return isinstance(parent, exp.Anonymous) and parent.name.lower() == "error" and parent.expressions == [node]


def _concatenates(node: exp.Expression) -> bool:
    return isinstance(node, _CONCATENATIONS) or (
        isinstance(node, exp.Anonymous) and node.name.lower() in _CONCATENATING_NAMES
    )


def _in_recursive_cte(node: exp.Expression) -> bool:
    """Whether ``node`` is in a CTE of a WITH RECURSIVE, where a step may feed its own
    result back (s || s doubles at each step, past the memory limit's reach)."""
    parent = node.parent
    while parent is not None:
        if isinstance(parent, exp.CTE) and isinstance(parent.parent, exp.With) and parent.parent.args.get("recursive"):
            return True
        parent = parent.parent
    return False


def _sizing_builders(function: exp.Expression) -> bool:
    return _builder_kind(function) in ("series", "repeat", "pad", "resize")


def _check_builder(function: exp.Func) -> None:
    """Refusals for one builder: literal sizes over the limit, builders feeding builders,
    builders inside lambdas, computed series steps."""
    name = _function_name(function)
    kind = _builder_kind(function)
    if kind == "concat":
        return  # checked when it runs, like a growing replacement
    if _inside_lambda(function):
        raise QueryRefused(f"function {name} may not be used inside a lambda: it would run once per list element")
    if kind == "replace":
        return
    inner = (node for node in function.find_all(exp.Func) if node is not function)
    if any(_sizing_builders(node) for node in inner):
        raise QueryRefused(f"function {name} may not take the result of another list or string builder")
    if kind == "series":
        _check_series(function, name)
    elif kind == "repeat":
        times = _literal_number(function.args.get("times"))
        text = _literal_string(function.this)
        if times is not None and abs(times) * max(len(text) if text is not None else 1, 1) > MAX_GENERATED_CHARACTERS:
            raise QueryRefused(f"function {name} may build at most {MAX_GENERATED_CHARACTERS:,} characters")
    elif kind == "pad":
        width = _literal_number(function.args.get("expression"))
        if width is not None and abs(width) > MAX_GENERATED_CHARACTERS:
            raise QueryRefused(f"function {name} may build at most {MAX_GENERATED_CHARACTERS:,} characters")
    elif kind == "resize":
        size = _literal_number(_argument(function, 1))
        if size is not None and abs(size) > MAX_GENERATED_ELEMENTS:
            raise QueryRefused(f"function {name} may build at most {MAX_GENERATED_ELEMENTS:,} elements")


def _check_series(function: exp.GenerateSeries, name: str) -> None:
    start, end, step = (function.args.get(key) for key in ("start", "end", "step"))
    values = [_literal_number(node) for node in (start, end)]
    step_value = 1.0 if step is None else _literal_number(step)
    if None not in values and step_value is not None:
        size = abs(values[1] - values[0]) / abs(step_value) if step_value else float("inf")
        if size > MAX_GENERATED_ELEMENTS:
            raise QueryRefused(f"function {name} may build at most {MAX_GENERATED_ELEMENTS:,} elements")
        return
    if _step_sign(step) is None:
        raise QueryRefused(f"function {name} needs a literal step (a number or an interval such as "
                           "INTERVAL 1 DAY) when its start or end is computed")


def _inside_lambda(node: exp.Expression) -> bool:
    parent = node.parent
    while parent is not None:
        if isinstance(parent, exp.Lambda):
            return True
        parent = parent.parent
    return False


_CONCATENATIONS = tuple(
    kind for kind in (
        getattr(exp, name, None) for name in (
            "DPipe", "Concat", "ConcatWs", "ArrayConcat", "Array", "Struct", "Tuple", "VarMap", "Map",
            "ArrayAppend", "ArrayPrepend", "ArrayConcatAgg", "Format",
        )
    ) if kind is not None
)
_CONCATENATING_NAMES = frozenset("""
    list_concat list_cat array_cat array_concat list_append array_append array_push_back list_prepend
    array_prepend array_push_front list_value list_pack struct_pack row map concat concat_ws list_zip
    array_value map_concat struct_concat struct_insert printf format
""".split())


def _check_reduce(function: exp.Func) -> None:
    """A reduce whose step concatenates its accumulator with itself doubles at every
    element: 31 elements built a 2 GB string in one uninterruptible call."""
    if not (isinstance(function, exp.Anonymous) and function.name.lower() in ("list_reduce", "array_reduce")):
        return
    for step in function.expressions:
        if not isinstance(step, exp.Lambda) or not step.expressions:
            continue
        accumulator = step.expressions[0].name
        for node in step.this.walk():
            if _concatenates(node) and _references(node, accumulator) > 1:
                raise QueryRefused(f"function {function.name.lower()} may not combine its accumulator with "
                                   "itself: the value would double at every element")


def _references(node: exp.Expression, name: str) -> int:
    return sum(1 for inner in node.walk() if isinstance(inner, exp.Identifier) and inner.name == name)


# printf: %[flags][width][.precision]type, width or precision maybe * (from an argument).
_PRINTF_SPEC = re.compile(r"%(%|[^a-zA-Z%]*[a-zA-Z])")


def _format_string(function: exp.Func) -> exp.Expression | None | bool:
    """The format argument of printf/format; False for any other function."""
    if isinstance(function, exp.Format):
        return function.this
    if isinstance(function, exp.Anonymous) and function.name.lower() == "printf":
        return function.expressions[0] if function.expressions else None
    return False


def _check_format(function: exp.Func) -> None:
    pattern = _format_string(function)
    if pattern is False:
        return
    name = _function_name(function)
    if not (isinstance(pattern, exp.Literal) and pattern.is_string):
        raise QueryRefused(f"function {name} needs a literal format string")
    specs = _printf_specs(pattern.this) if name == "printf" else _format_specs(pattern.this)
    for spec in specs:
        if "*" in spec or "{" in spec:
            raise QueryRefused(f"function {name} may not take a width or precision from an argument")
        if any(int(number) > MAX_GENERATED_CHARACTERS for number in re.findall(r"\d+", spec)):
            raise QueryRefused(f"function {name} may build at most {MAX_GENERATED_CHARACTERS:,} characters")


def _printf_specs(pattern: str) -> list[str]:
    return [match.group(1) for match in _PRINTF_SPEC.finditer(pattern) if match.group(1) != "%"]


def _format_specs(pattern: str) -> list[str]:
    """The contents of each {...} replacement field ({{ and }} are literal braces); a
    field holding a nested {...} (a width from an argument) keeps its inner braces."""
    specs, index = [], 0
    while index < len(pattern):
        char = pattern[index]
        if char == "{" and pattern.startswith("{{", index):
            index += 2
            continue
        if char == "{":
            depth, end = 1, index + 1
            while end < len(pattern) and depth:
                depth += {"{": 1, "}": -1}.get(pattern[end], 0)
                end += 1
            specs.append(pattern[index + 1:end - 1])
            index = end
            continue
        index += 1
    return specs


def _replacement_grows(function: exp.Expression) -> bool:
    """Whether replace/regexp_replace could make its string longer: false only for a
    literal replacement no longer than a literal searched string (replace), or an empty
    one (regexp_replace, whose pattern may match the empty string everywhere)."""
    replacement = _literal_string(function.args.get("replacement"))
    if replacement is None:
        return True
    if isinstance(function, exp.RegexpReplace):
        return replacement != ""
    searched = _literal_string(function.args.get("expression"))
    return searched is None or len(searched) == 0 or len(replacement) > len(searched)


def _bound_builders(root: exp.Expression) -> None:
    """Rewrites every builder whose size is computed so that it is bounded (in place).

    Children first, so a copy of an argument that a bound repeats already holds the
    bounded form of any builder inside it.
    """
    for node in reversed(list(_walk(root))):
        kind = _builder_kind(node)
        if kind is None or _bounded(node, kind):
            continue
        if kind in _SIZED:
            size = _sized_argument(node, kind)
            size.replace(_size_checked(node, kind, size.copy()))
        elif kind == "replace":
            node.replace(_replace_checked(node.copy()))
        elif kind == "concat":
            node.replace(_concat_checked(node.copy()))


def _verify_bounded(root: exp.Expression) -> None:
    """Fails closed: every builder of the SQL that will run must carry its bound."""
    for node in _walk(root):
        kind = _builder_kind(node)
        if kind is not None and not _bounded(node, kind):
            raise QueryRefused(f"function {_function_name(node)} could not be bounded")


def _bounded(node: exp.Expression, kind: str) -> bool:
    """Whether ``node``'s size is within its limit as written (a literal, or the user's own
    LEAST with a literal), or carries the guard's run-time check (_size_checked)."""
    if kind == "series":
        return _series_within_limit(node) or _size_is_checked(node, kind)
    if kind == "repeat":
        text = _literal_string(node.this)
        limit = _upper_bound(node.args.get("times"))
        if text is not None and limit is not None and limit * max(len(text), 1) <= MAX_GENERATED_CHARACTERS:
            return True
        return _size_is_checked(node, kind)
    if kind == "pad":
        limit = _upper_bound(node.args.get("expression"))
        return (limit is not None and limit <= MAX_GENERATED_CHARACTERS) or _size_is_checked(node, kind)
    if kind == "resize":
        size = _argument(node, 1)
        if size is None:
            return True  # DuckDB's binder refuses the call
        if _plain_fill(node):
            literal = _literal_number(size)
            if literal is not None:
                return abs(literal) <= MAX_GENERATED_ELEMENTS
            limit = _upper_bound(size)
            if limit is not None and limit <= MAX_ROW_ELEMENTS:
                return True
        return _size_is_checked(node, kind)
    if kind in ("replace", "concat"):
        parent = node.parent
        checked = _replace_checked if kind == "replace" else _concat_checked
        return (isinstance(parent, exp.Case) and parent.args.get("default") is node
                and parent.args.get("ifs") == checked(node.copy()).args.get("ifs"))
    return False


# Builders whose size is one argument, which a computed value may set.
_SIZED = ("series", "repeat", "pad", "resize")
_OVER_THE_LIMIT = "is over the limit of {} a computed size may reach"


@dataclass(frozen=True)
class _SizeLimit:
    most: exp.Expression  # the most the size may be (computed, for a repeat of a computed string)
    message: exp.Expression  # text for error(), naming the function, the size and the limit


def _sized_argument(node: exp.Expression, kind: str) -> exp.Expression | None:
    """The argument that sets how much ``node`` builds: a series' end, repeat's count,
    a pad's width, a resize's size."""
    if kind == "series":
        return node.args.get("end")
    if kind == "repeat":
        return node.args.get("times")
    if kind == "pad":
        return node.args.get("expression")
    return _argument(node, 1)


def _size_checked(node: exp.Expression, kind: str, size: exp.Expression) -> exp.Case:
    """``size`` checked at run time, as the argument of ``node`` that sets its size:

        CASE WHEN size > most THEN error('<function>(): <size> ... is over the limit ...')
             WHEN NOT size IS NULL THEN LEAST(size, most) END

    Over the limit, the query fails saying so, rather than answering with a clamped, wrong
    value; NULL stays NULL, as the function itself takes it (LEAST alone ignores a NULL). The
    LEAST keeps the bound in force whatever the first evaluation saw (random() is drawn again).
    A series with a negative step goes down: size < most, GREATEST.
    """
    below = kind == "series" and _step_sign(node.args.get("step")) == -1
    over, bound = (exp.LT, exp.Greatest) if below else (exp.GT, exp.Least)
    limits = _size_limits(node, kind, size)
    ifs = [exp.If(this=over(this=size.copy(), expression=limit.most.copy()),
                  true=exp.Anonymous(this="error", expressions=[limit.message])) for limit in limits]
    ifs.append(exp.If(this=exp.Not(this=exp.Is(this=size.copy(), expression=exp.Null())),
                      true=bound(this=size.copy(), expressions=[limit.most.copy() for limit in limits],
                                 ignore_nulls=True)))
    return exp.Case(ifs=ifs)


def _size_is_checked(node: exp.Expression, kind: str) -> bool:
    """Whether ``node``'s size argument is exactly _size_checked's form, as the guard writes it."""
    size = _sized_argument(node, kind)
    if not isinstance(size, exp.Case) or not size.args.get("ifs"):
        return False
    clamp = size.args["ifs"][-1].args.get("true")
    if not isinstance(clamp, (exp.Least, exp.Greatest)):
        return False
    return size == _size_checked(node, kind, clamp.this.copy())


def _size_limits(node: exp.Expression, kind: str, size: exp.Expression) -> list[_SizeLimit]:
    name = _function_name(node)
    if kind == "series":
        return [_SizeLimit(_series_reach(node), _series_message(node, name, size))]
    if kind == "repeat":
        return [_SizeLimit(_repeat_limit(node), _message(
            f"{name}(): ", size, f" times {_OVER_THE_LIMIT.format(f'{MAX_GENERATED_CHARACTERS:,} characters')}"))]
    if kind == "pad":
        return [_SizeLimit(exp.Literal.number(MAX_GENERATED_CHARACTERS), _message(
            f"{name}(): a width of ", size,
            f" {_OVER_THE_LIMIT.format(f'{MAX_GENERATED_CHARACTERS:,} characters')}"))]
    limits = [_SizeLimit(exp.Literal.number(MAX_ROW_ELEMENTS), _message(
        f"{name}(): ", size, f" elements {_OVER_THE_LIMIT.format(f'{MAX_ROW_ELEMENTS:,}')}"))]
    if not _plain_fill(node):  # each new element is a copy of the fill value
        limits.append(_SizeLimit(
            exp.IntDiv(this=exp.Literal.number(MAX_GENERATED_CHARACTERS), expression=_text_length(_argument(node, 2))),
            _message(f"{name}(): ", size, " copies of the fill value "
                     f"{_OVER_THE_LIMIT.format(f'{MAX_GENERATED_CHARACTERS:,} characters')}")))
    return limits


def _message(before: str, value: exp.Expression, after: str) -> exp.Expression:
    """'<before><value><after>', as text for error()."""
    return exp.Concat(expressions=[exp.Literal.string(before),
                                   exp.Cast(this=exp.Paren(this=value.copy()), to=exp.DataType.build("TEXT")),
                                   exp.Literal.string(after)], safe=True, coalesce=True)


def _series_message(node: exp.GenerateSeries, name: str, end: exp.Expression) -> exp.Expression:
    """How many elements the series would have (a numeric one), or where it runs from and to
    (dates and times, whose step is an interval)."""
    start, step = node.args.get("start"), node.args.get("step")
    if step is not None and _literal_number(step) is None:
        return exp.Concat(expressions=[
            exp.Literal.string(f"{name}(): from "),
            exp.Cast(this=exp.Paren(this=start.copy()), to=exp.DataType.build("TEXT")),
            exp.Literal.string(" to "),
            exp.Cast(this=exp.Paren(this=end.copy()), to=exp.DataType.build("TEXT")),
            exp.Literal.string(f" {_OVER_THE_LIMIT.format(f'{MAX_ROW_ELEMENTS:,} elements')}"),
        ], safe=True, coalesce=True)
    distance = exp.Sub(this=exp.Paren(this=end.copy()), expression=exp.Paren(this=start.copy()))
    steps = exp.Div(this=exp.Paren(this=distance),
                    expression=step.copy() if step is not None else exp.Literal.number(1))
    if node.args.get("is_end_exclusive"):
        count: exp.Expression = exp.Ceil(this=steps)
    else:
        count = exp.Add(this=exp.Floor(this=steps), expression=exp.Literal.number(1))
    return _message(f"{name}(): ", exp.Cast(this=count, to=exp.DataType.build("BIGINT")),
                    f" elements {_OVER_THE_LIMIT.format(f'{MAX_ROW_ELEMENTS:,}')}")


def _text_length(value: exp.Expression) -> exp.Expression:
    """LENGTH(CAST(value AS TEXT)), at least 1: an upper bound on the characters of a
    string, and more than the elements of a list."""
    length = exp.Length(this=exp.Cast(this=exp.Paren(this=value.copy()), to=exp.DataType.build("TEXT")))
    return exp.Greatest(this=length, expressions=[exp.Literal.number(1)], ignore_nulls=True)


def _repeat_limit(node: exp.Expression) -> exp.Expression:
    """How many times repeat may repeat its value so the result stays within the limit."""
    text = _literal_string(node.this)
    if text is not None:
        return exp.Literal.number(MAX_GENERATED_CHARACTERS // max(len(text), 1))
    return exp.IntDiv(this=exp.Literal.number(MAX_GENERATED_CHARACTERS), expression=_text_length(node.this))


def _plain_fill(node: exp.Expression) -> bool:
    fill = _argument(node, 2)
    return fill is None or isinstance(fill, (exp.Literal, exp.Null, exp.Boolean))


def _upper_bound(value: exp.Expression | None) -> float | None:
    """An upper bound of a numeric expression the guard can read off its SQL: a literal,
    or a LEAST with a literal among its arguments."""
    value = _unwrapped(value)
    literal = _literal_number(value)
    if literal is not None:
        return literal
    if isinstance(value, exp.Least):
        bounds = [_upper_bound(argument) for argument in (value.this, *value.expressions)]
        known = [bound for bound in bounds if bound is not None]
        return min(known) if known else None
    return None


def _lower_bound(value: exp.Expression | None) -> float | None:
    value = _unwrapped(value)
    literal = _literal_number(value)
    if literal is not None:
        return literal
    if isinstance(value, exp.Greatest):
        bounds = [_lower_bound(argument) for argument in (value.this, *value.expressions)]
        known = [bound for bound in bounds if bound is not None]
        return max(known) if known else None
    return None


def _unwrapped(value: exp.Expression | None) -> exp.Expression | None:
    """``value`` without the parentheses and numeric casts around it."""
    while True:
        if isinstance(value, exp.Paren):
            value = value.this
        elif isinstance(value, exp.Cast) and value.to.is_type(*exp.DataType.NUMERIC_TYPES):
            value = value.this
        else:
            return value


def _step_sign(step: exp.Expression | None) -> int | None:
    """+1 or -1 for a literal step (a number, or an interval with a literal count); None
    for a computed one."""
    if step is None:
        return 1
    number = _literal_number(step)
    if number is not None:
        return (number > 0) - (number < 0) or None
    negated = isinstance(step, exp.Neg)
    interval = step.this if negated else step
    if isinstance(interval, exp.Interval):
        count = _interval_count(interval.this)
        if count:
            sign = 1 if count > 0 else -1
            return -sign if negated else sign
    return None


def _interval_count(value: exp.Expression | None) -> float | None:
    value = value.this if isinstance(value, exp.Paren) else value
    if isinstance(value, exp.Literal):
        try:
            return float(value.this.split()[0]) if value.is_string else float(value.this)
        except (ValueError, IndexError):
            return None
    return _literal_number(value)


def _series_reach(node: exp.GenerateSeries) -> exp.Expression:
    """start + step * MAX_ROW_ELEMENTS (less one step where the end is in the series, as in
    generate_series): as far as a computed end may go, on the side the step goes."""
    start, step = node.args.get("start"), node.args.get("step")
    steps = MAX_ROW_ELEMENTS if node.args.get("is_end_exclusive") else MAX_ROW_ELEMENTS - 1
    return exp.Add(
        this=exp.Paren(this=start.copy()),
        expression=exp.Mul(this=(step.copy() if step is not None else exp.Literal.number(1)),
                           expression=exp.Literal.number(steps)),
    )


def _series_within_limit(node: exp.GenerateSeries) -> bool:
    """A literal start and step, and an end within the limit as written: a literal end within
    MAX_GENERATED_ELEMENTS (the list is built once, then constant), or the user's own
    LEAST (GREATEST, going down) with a literal within MAX_ROW_ELEMENTS, since a computed end
    builds its list for every row."""
    start, end, step = (node.args.get(key) for key in ("start", "end", "step"))
    step_value = 1.0 if step is None else _literal_number(step)
    start_value = _literal_number(start)
    if start_value is None or not step_value:
        return False
    literal_end = _literal_number(end)
    if literal_end is not None:
        return abs(literal_end - start_value) / abs(step_value) <= MAX_GENERATED_ELEMENTS
    end_bound = _upper_bound(end) if step_value > 0 else _lower_bound(end)
    if end_bound is None:
        return False
    end_included = 0 if node.args.get("is_end_exclusive") else 1
    return (end_bound - start_value) / step_value + end_included <= MAX_ROW_ELEMENTS


def _replace_checked(node: exp.Expression) -> exp.Case:
    """CASE WHEN <most the result could grow to> > limit THEN error(...) ELSE node END."""
    name = _function_name(node)
    source = exp.Length(this=exp.Paren(this=node.this.copy()))
    replacement = node.args.get("replacement")
    text = _literal_string(replacement)
    width = exp.Literal.number(max(len(text), 1)) if text is not None else _text_length(replacement)
    if isinstance(node, exp.RegexpReplace):
        # Each match adds at most the replacement, whose \0..\9 each copy at most the match.
        # Built left to right, as the regenerated SQL parses again.
        most = exp.Mul(this=exp.Mul(this=exp.Literal.number(2),
                                    expression=exp.Paren(this=exp.Add(this=source, expression=exp.Literal.number(1)))),
                       expression=width)
    else:
        most = exp.Mul(this=source, expression=width)
    message = f"{name} could build a string over {MAX_GENERATED_CHARACTERS:,} characters: refused"
    return exp.Case(
        ifs=[exp.If(this=exp.GT(this=most, expression=exp.Literal.number(MAX_GENERATED_CHARACTERS)),
                    true=exp.Anonymous(this="error", expressions=[exp.Literal.string(message)]))],
        default=node,
    )


def _concat_checked(node: exp.Expression) -> exp.Case:
    """CASE WHEN <the parts' total length> > limit THEN error(...) ELSE node END, for a
    concatenation in a recursive CTE."""
    total: exp.Expression | None = None
    for part in node.iter_expressions():
        if isinstance(part, exp.Literal):
            length: exp.Expression = exp.Literal.number(len(part.this))
        else:
            text = exp.Cast(this=exp.Paren(this=part.copy()), to=exp.DataType.build("TEXT"))
            length = exp.Coalesce(this=exp.Length(this=text), expressions=[exp.Literal.number(0)])
        total = length if total is None else exp.Add(this=total, expression=length)
    total = total if total is not None else exp.Literal.number(0)
    message = (f"a concatenation in a recursive CTE could build a value over {MAX_GENERATED_CHARACTERS:,} "
               "characters: refused")
    return exp.Case(
        ifs=[exp.If(this=exp.GT(this=total, expression=exp.Literal.number(MAX_GENERATED_CHARACTERS)),
                    true=exp.Anonymous(this="error", expressions=[exp.Literal.string(message)]))],
        default=node,
    )


def _argument(function: exp.Expression, index: int) -> exp.Expression | None:
    arguments = function.expressions
    return arguments[index] if len(arguments) > index else None


def _literal_number(node: exp.Expression | None) -> float | None:
    if isinstance(node, exp.Paren):
        return _literal_number(node.this)
    if isinstance(node, exp.Cast) and node.to.is_type(*exp.DataType.NUMERIC_TYPES):
        return _literal_number(node.this)
    if isinstance(node, exp.Neg):
        value = _literal_number(node.this)
        return None if value is None else -value
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            return float(node.this)
        except ValueError:
            return None
    return None


def _literal_string(node: exp.Expression | None) -> str | None:
    if isinstance(node, exp.Literal) and node.is_string:
        return node.this
    return None


def _function_name(function: exp.Expression) -> str:
    if isinstance(function, (exp.Anonymous, exp.AnonymousAggFunc)):
        return function.name.lower()
    # The name DuckDB will see, e.g. range() rather than sqlglot's GenerateSeries.
    rendered = re.match(r"\w+", function.sql(dialect=DIALECT))
    return rendered.group(0).lower() if rendered else function.key


def _parameter_name(placeholder: exp.Placeholder) -> str:
    name = placeholder.this  # None for "?"
    if not name or name.isdigit():
        raise QueryRefused("positional parameters (? or $1) are not supported: use named ones such as $model")
    return name


def _bind(used: frozenset[str], params: dict[str, Any]) -> dict[str, Any]:
    missing = sorted(used - params.keys())
    if missing:
        raise ParameterRefused(missing[0], missing=True)
    unused = sorted(params.keys() - used)
    if unused:
        raise ParameterRefused(unused[0], missing=False)
    return params


# sqlglot clauses whose "Required keyword: 'this' missing" means the clause stops short.
_CLAUSES = {"Where": "WHERE", "Having": "HAVING", "Qualify": "QUALIFY", "Limit": "LIMIT", "Offset": "OFFSET",
            "Order": "ORDER BY", "Group": "GROUP BY", "Union": "UNION", "Intersect": "INTERSECT",
            "Except": "EXCEPT", "Window": "WINDOW"}


def _describe_parse_error(error: ParseError, sql: str) -> str:
    """A parse error in plain words with its place; never sqlglot's internals.

    A clause that stops short says so; anything else gets DuckDB's own parser's words,
    and where DuckDB parses the query fine, it is sqlglot's limit, said as such.
    """
    first = error.errors[0] if error.errors else None
    if first is not None:
        missing = re.match(r"Required keyword: '\w+' missing for <class '(?:[\w.]*\.)?(\w+)'>", first["description"])
        if missing and missing.group(1) in _CLAUSES:
            return (f"syntax error at line {first['line']}, column {first['col']}: "
                    f"the {_CLAUSES[missing.group(1)]} clause is incomplete")
    duckdb_says = _duckdb_syntax_error(sql)
    if duckdb_says is not None:
        return duckdb_says
    place = f" at line {first['line']}, column {first['col']}" if first is not None else ""
    return (f"the SQL guard cannot read this query{place}, although DuckDB can: "
            "write that part another way (for a PIVOT statement inside a query, SELECT * FROM (PIVOT ...))")


def _describe_token_error(error: TokenError, sql: str) -> str:
    # The tokenizer reports where it gave up: usually the end of an unclosed string,
    # quoted name or comment.
    stop = min(error.end if error.end is not None else len(sql), len(sql))
    line = sql.count("\n", 0, stop) + 1
    column = stop - sql.rfind("\n", 0, stop)
    return (
        f"syntax error at line {line}, column {column}: cannot read the query here "
        "(an unclosed string, quoted name or comment?)"
    )


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0]
