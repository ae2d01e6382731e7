"""`benchboard query --param NAME=VALUE`: a real subprocess on a real DuckDB file, the SQL's $NAME bound."""

from __future__ import annotations

import json

import pytest

from storage.database import Database
from tests.integration.cli_process import benchboard

MODELS = [("bert-tiny", "bert", 4.4), ("bert-small", "bert", 29.0), ("gpt2-tiny", "gpt2", 2.1), ("42", "num", 1.0)]


@pytest.fixture(scope="module")
def db_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("query-params") / "b.duckdb"
    with Database(path) as db:
        db.cursor().executemany(
            "INSERT INTO models (model_name, model_family, parameters_million) VALUES (?, ?, ?)", MODELS)
    return str(path)


def query(db_path: str, sql: str, *flags: str):
    return benchboard("query", sql, "--db-path", db_path, "--json", *flags)


def test_int_and_string_params_filter_the_rows(db_path):
    done = query(db_path, "SELECT model_name, typeof($family) AS t FROM models "
                          "WHERE model_family = $family AND parameters_million < $most ORDER BY model_name",
                 "--param", "family=bert", "--param", "most=10")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == [["bert-tiny", "VARCHAR"]]
    # An integer binds as an integer, a decimal number as a double, the rest as text.
    typed = query(db_path, "SELECT typeof($i), typeof($f), typeof($e), typeof($s), typeof($n), typeof($empty)",
                  "--param", "i=-3", "--param", "f=2.5", "--param", "e=1e-3", "--param", "s=bert",
                  "--param", "n=nan", "--param", "empty=")
    assert typed.returncode == 0, typed.stderr
    assert json.loads(typed.stdout)["rows"] == [["INTEGER", "DOUBLE", "DOUBLE", "VARCHAR", "VARCHAR", "VARCHAR"]]
    # A value with an = in it keeps everything after the first one.
    kept = query(db_path, "SELECT $s", "--param", "s=a=b")
    assert kept.returncode == 0 and json.loads(kept.stdout)["rows"] == [["a=b"]]


def test_a_number_compared_with_text_is_cast_in_the_sql(db_path):
    done = query(db_path, "SELECT model_family FROM models WHERE model_name = $name::VARCHAR", "--param", "name=42")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == [["num"]]


def test_a_parameter_without_its_param_flag_is_refused_naming_the_flag(db_path):
    done = query(db_path, "SELECT model_name FROM models WHERE model_family = $x")
    assert done.returncode == 2
    assert done.stderr == "error: query refused: parameter $x has no value: pass it with --param x=VALUE\n"
    assert done.stdout == ""


def test_a_param_the_sql_does_not_use_is_refused(db_path):
    done = query(db_path, "SELECT count(*) FROM models", "--param", "family=bert")
    assert done.returncode == 2
    assert done.stderr == "error: --param family: the query does not use $family\n"


@pytest.mark.parametrize("flag, why", [
    ("family", "--param family: not NAME=VALUE"),
    ("=bert", "--param =bert: no name before the ="),
    ("1x=bert", "--param 1x=bert: '1x' is not a name before the ="),
    ("fam-ily=bert", "--param fam-ily=bert: 'fam-ily' is not a name before the ="),
])
def test_a_malformed_param_is_one_error_line_naming_the_flag(db_path, flag, why):
    done = query(db_path, "SELECT count(*) FROM models WHERE model_family = $family", "--param", flag)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {why}") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_the_same_param_twice_is_refused(db_path):
    done = query(db_path, "SELECT $family", "--param", "family=bert", "--param", "family=gpt2")
    assert done.returncode == 2
    assert done.stderr == "error: --param family=gpt2: $family is already given\n"
