"""The guard in front of custom SQL: parse, refuse anything but one read-only query over
the allowlisted tables, then run sqlglot's regenerated SQL in the read-only sandbox.

Defence in depth: the checks here give clear refusals, but the boundary that holds if
they miss something is DuckDB itself (external access off, configuration locked, a
READ ONLY transaction; see storage.sql_execution).

Policy:
- exactly one statement, and it is a query: SELECT, WITH, a set operation, VALUES or
  DuckDB's PIVOT/UNPIVOT statement;
- every table is a plain name on the allowlist, or ``main.<name>``, or a CTE that sqlglot's
  scope analysis resolved (so a CTE named like a table cannot hide a table);
- no table functions at all in FROM (``read_csv``, ``glob``, ``range``, ...), no string
  paths as tables; UNNEST of a list is the only table-producing construct allowed;
- functions: those sqlglot models (standard scalar, aggregate and window functions),
  minus the ones that reveal the server or touch files and sequences, plus an explicit
  list of DuckDB functions sqlglot does not model. Anything else is refused by name;
- named parameters (``$model``) only, bound by DuckDB, never interpolated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, SqlglotError, TokenError
from sqlglot.optimizer.scope import Scope, traverse_scope
from sqlglot.tokens import Token, TokenType

from storage.sql_execution import QueryFailed, QueryResult, QueryTimeout, execute_read_only

__all__ = [
    "QueryFailed",
    "QueryRefused",
    "QueryResult",
    "QuerySyntaxError",
    "QueryTimeout",
    "check_query",
    "run_guarded_query",
]

DIALECT = "duckdb"
MAX_QUERY_LENGTH = 100_000
MAX_NESTING_DEPTH = 64

_QUERY_KINDS = "only queries (SELECT, WITH, set operations, VALUES, PIVOT) may run"
_QUERY_STARTS = {
    TokenType.SELECT, TokenType.WITH, TokenType.FROM, TokenType.VALUES,
    TokenType.L_PAREN, TokenType.PIVOT, TokenType.UNPIVOT,
}
_OPENING = {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE}
_CLOSING = {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE}

# Statements DuckDB (or sqlglot) accepts inside a query, e.g. FROM (DESCRIBE t) or a
# CTE holding INSERT ... RETURNING.
_NESTED_STATEMENTS = (exp.DML, exp.DDL, exp.Command, exp.Describe, exp.Summarize, exp.Show, exp.Pragma)

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
""".split())

_WORD = re.compile(r"[^\W\d]\w*")

# Characters no allowlisted table name has, but file names and URLs do.
_PATH_CHARACTERS = re.compile(r"[./\\:*?~]")


class QueryRefused(Exception):
    """The guard refused the query; ``reason`` names what was refused and why."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class QuerySyntaxError(QueryRefused):
    """The query does not parse; ``reason`` carries the parser's line and column."""


@dataclass(frozen=True)
class CheckedQuery:
    sql: str  # sqlglot's regeneration, comments dropped: what actually runs
    parameters: frozenset[str]  # names of the $parameters it uses


def check_query(
    sql: str,
    allowed_tables: Iterable[str],
    *,
    max_length: int = MAX_QUERY_LENGTH,
    max_depth: int = MAX_NESTING_DEPTH,
) -> str:
    """sqlglot's regenerated SQL (DuckDB dialect) for ``sql``, or QueryRefused saying why not."""
    return inspect_query(sql, allowed_tables, max_length=max_length, max_depth=max_depth).sql


def run_guarded_query(
    connection,
    sql: str,
    *,
    allowed_tables: Iterable[str],
    params: dict[str, Any] | None = None,
    timeout_s: float = 5.0,
    row_cap: int = 10_000,
) -> QueryResult:
    """Check ``sql``, bind ``params`` to its $parameters and run it read-only.

    Raises QueryRefused (QuerySyntaxError for a parse error), QueryFailed when DuckDB
    rejects it while running, QueryTimeout past ``timeout_s``.
    """
    checked = inspect_query(sql, allowed_tables)
    bound = _bind(checked.parameters, params or {})
    return execute_read_only(connection, checked.sql, params=bound, timeout_s=timeout_s, row_cap=row_cap)


def inspect_query(
    sql: str,
    allowed_tables: Iterable[str],
    *,
    max_length: int = MAX_QUERY_LENGTH,
    max_depth: int = MAX_NESTING_DEPTH,
) -> CheckedQuery:
    """The checked, regenerated query and the parameters it needs; QueryRefused if refused."""
    if len(sql) > max_length:
        raise QueryRefused(f"query is too long: {len(sql):,} characters (at most {max_length:,})")
    allowed = frozenset(name.lower() for name in allowed_tables)
    dialect = Dialect.get_or_raise(DIALECT)
    try:
        tokens = dialect.tokenize(sql)
        _check_statement_shape(tokens, max_depth)
        statements = [s for s in dialect.parser().parse(tokens, sql) if s is not None]
        root = statements[0]
        _check_root(root)
        cte_references = _cte_references(root)
        parameters = _check_nodes(root, allowed, cte_references)
        return CheckedQuery(sql=root.sql(dialect=DIALECT, comments=False), parameters=parameters)
    except RecursionError:
        raise QueryRefused(f"query is nested too deeply (at most {max_depth} levels)") from None
    except ParseError as error:
        raise QuerySyntaxError(_describe_parse_error(error)) from None
    except TokenError as error:
        raise QuerySyntaxError(_describe_token_error(error, sql)) from None
    except QueryRefused:
        raise
    except Exception as error:  # noqa: BLE001 - sqlglot on odd input must not become a 500
        raise QuerySyntaxError(f"the query could not be analysed: {error}") from None


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
    if first[0].token_type not in _QUERY_STARTS:
        raise QueryRefused(f"{_statement_kind(first)} is not allowed: {_QUERY_KINDS}")
    depth = 0
    for token in first:
        if token.token_type in _OPENING:
            depth += 1
            if depth > max_depth:
                raise QueryRefused(f"query is nested too deeply (at most {max_depth} levels)")
        elif token.token_type in _CLOSING:
            depth -= 1


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
    if not isinstance(root, (exp.Query, exp.Values, exp.Pivot)):
        kind = root.name if isinstance(root, exp.Command) else root.key
        raise QueryRefused(f"{kind.upper()} is not allowed: {_QUERY_KINDS}")


def _cte_references(root: exp.Expression) -> set[int]:
    """ids of the exp.Table nodes that scope analysis resolved to a CTE, not a table.

    Everything else named in FROM is treated as a real table, so a table the analysis
    did not resolve (or a CTE referenced outside its scope) must be on the allowlist.
    """
    references = set()
    try:
        scopes = traverse_scope(root)
    except SqlglotError as error:
        raise QueryRefused(f"the query's table references could not be analysed: {error}") from None
    for scope in scopes:
        for table in scope.tables:
            if isinstance(scope.sources.get(table.alias_or_name), Scope):
                references.add(id(table))
    return references


def _check_nodes(root: exp.Expression, allowed: frozenset[str], cte_references: set[int]) -> frozenset[str]:
    """Checks every node of the tree; returns the names of the $parameters used."""
    parameters = set()
    for node in _walk(root):
        if isinstance(node, _NESTED_STATEMENTS):
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
    _check_generated_size(function)


# These build one list or string in a single call, which interrupt() cannot stop midway
# (generate_series(1, 1e9) ran 79 s past a 0.5 s limit), so their size must be a literal
# within bounds, and one may not feed another (repeat(repeat(...)) multiplies).
MAX_GENERATED_ELEMENTS = 1_000_000
_FORMAT_WIDTH = re.compile(r"\d{7,}")


def _size_arguments(function: exp.Func) -> list[exp.Expression | None] | None:
    """The arguments that set how big a value ``function`` builds; None if it builds none."""
    if isinstance(function, exp.GenerateSeries):
        return [function.args.get("start"), function.args.get("end"), function.args.get("step")]
    if isinstance(function, exp.Repeat):
        return [function.args.get("times")]
    if isinstance(function, exp.Pad):
        return [function.args.get("expression")]
    if isinstance(function, exp.Anonymous) and function.name.lower() in ("list_resize", "array_resize"):
        return function.expressions[1:2]
    return None


def _format_string(function: exp.Func) -> exp.Expression | None | bool:
    """The format argument of printf/format; False for any other function."""
    if isinstance(function, exp.Format):
        return function.this
    if isinstance(function, exp.Anonymous) and function.name.lower() == "printf":
        return function.expressions[0] if function.expressions else None
    return False


def _literal_number(node: exp.Expression | None) -> float | None:
    if isinstance(node, exp.Neg):
        value = _literal_number(node.this)
        return None if value is None else -value
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            return float(node.this)
        except ValueError:
            return None
    return None


def _check_generated_size(function: exp.Func) -> None:
    name = _function_name(function)
    pattern = _format_string(function)
    if pattern is not False:
        if not (isinstance(pattern, exp.Literal) and pattern.is_string):
            raise QueryRefused(f"function {name} needs a literal format string")
        if _FORMAT_WIDTH.search(pattern.this):
            raise QueryRefused(f"function {name} may build at most {MAX_GENERATED_ELEMENTS:,} characters")
        return
    arguments = _size_arguments(function)
    if arguments is None:
        return
    if any(_size_arguments(inner) is not None for inner in function.find_all(exp.Func) if inner is not function):
        raise QueryRefused(f"function {name} may not take the result of another list or string builder")
    present = [argument for argument in arguments if argument is not None]
    if not present:
        return  # a call missing its size is DuckDB's binder's to refuse
    values = [_literal_number(argument) for argument in present]
    if any(value is None for value in values):
        raise QueryRefused(f"function {name} needs literal numbers as its size arguments")
    if isinstance(function, exp.GenerateSeries):
        start, end, step = values[0], values[1], (values[2] if len(values) > 2 else 1.0)
        size = abs(end - start) / abs(step) if step else float("inf")
    else:
        size = abs(values[0])
    if size > MAX_GENERATED_ELEMENTS:
        raise QueryRefused(f"function {name} may build at most {MAX_GENERATED_ELEMENTS:,} elements")


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
        raise QueryRefused(f"parameter ${missing[0]} has no value: pass it in params")
    unused = sorted(params.keys() - used)
    if unused:
        raise QueryRefused(f"parameter ${unused[0]} is not used by the query")
    return params


def _describe_parse_error(error: ParseError) -> str:
    if error.errors:
        first = error.errors[0]
        return f"syntax error at line {first['line']}, column {first['col']}: {first['description']}"
    return f"syntax error: {_first_line(str(error))}"


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
