"""The generate scenario end to end (issue 11): the real ``benchboard run`` CLI measures real
tiny decoder, encoder-decoder and audio models into a real DuckDB file; a model that cannot
generate is refused by the CLI (exit 2), the API (400), the client and ``benchboard remote``,
each naming the field."""

from __future__ import annotations

import argparse

import pytest
from benchboard_client import BenchmarkAPIClient, BenchmarkAPIError
from litestar.testing import TestClient

from storage.database import Database
from tests.integration.cli_process import benchboard
from webapp.app import create_app
from webapp.cli.remote import add_remote_parser, run_remote
from webapp.wiring.settings import Settings

MODELS = ("gpt2-tiny", "t5-tiny", "llama-tiny", "whisper-tiny-random")
NEW_TOKENS = 16


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generate")
    db_path = folder / "g.duckdb"
    # --max-seconds keeps each config's timed loop short; the figures' consistency is under test,
    # not their precision.
    done = benchboard("run", "--models", *MODELS, "--scenario", "generate", "--new-tokens", str(NEW_TOKENS),
                      "--batch-sizes", "1", "2", "--db-path", str(db_path), "--results-dir", str(folder / "results"),
                      "--max-seconds", "0.5", "--threads", "1", timeout=900)
    return done, db_path, folder


def test_generate_run_stores_eight_rows_with_consistent_generation_figures(generated):
    done, db_path, _ = generated
    assert done.returncode == 0, done.stderr
    with Database(db_path) as db:
        rows = db.cursor().execute(
            "SELECT model_name, batch_size, scenario, new_tokens, timing, ttft_ms, ttft_p90_ms, ttft_p99_ms, "
            "ttft_ci_low_ms, ttft_ci_high_ms, tpot_ms, tpot_p90_ms, tpot_p99_ms, e2e_ms, p50_latency_ms, "
            "decode_tokens_per_second, prefill_tokens_per_second, n_samples, len(ttft_samples_ms), "
            "len(tpot_samples_ms), memory_peak_mb, config_key FROM results_view ORDER BY model_name, batch_size"
        ).fetchall()
    assert sorted((row[0], row[1]) for row in rows) == sorted((m, bs) for m in MODELS for bs in (1, 2))
    for (model, batch, scenario, new_tokens, timing, ttft, ttft_p90, ttft_p99, ttft_low, ttft_high, tpot, tpot_p90,
         tpot_p99, e2e, p50, decode_rate, prefill_rate, n, ttft_kept, gaps_kept, memory, key) in rows:
        label = f"{model} bs{batch}"
        assert (scenario, new_tokens, timing) == ("generate", NEW_TOKENS, "latency"), label
        assert ttft > 0 and tpot > 0, label
        assert ttft <= e2e and e2e == p50, label  # the prefill is part of the whole generation
        assert ttft <= ttft_p90 <= ttft_p99 and ttft_low <= ttft <= ttft_high, label
        assert tpot_p90 <= tpot_p99, label
        decode_seconds = tpot * (NEW_TOKENS - 1) / 1e3  # a sample's decode time: its TPOT times N - 1
        assert decode_rate == pytest.approx(batch * (NEW_TOKENS - 1) / decode_seconds, rel=0.02), label
        assert prefill_rate > 0, label
        assert ttft_kept == n and gaps_kept == n * (NEW_TOKENS - 1), label
        assert memory is not None, label
        assert key.endswith(f"|generate-new{NEW_TOKENS}"), label


def test_generate_run_prints_and_reports_the_generation_columns(generated):
    done, _, folder = generated
    assert done.returncode == 0, done.stderr
    header = done.stdout.strip().splitlines()[0].split()
    assert {"ttft_ms", "tpot_ms", "e2e_ms", "decode_tokens_per_second"} <= set(header)
    (run_folder,) = [p for p in (folder / "results").iterdir() if p.is_dir()]
    markdown = (run_folder / "report.md").read_text()
    assert "## Generation" in markdown and "TTFT p50 ms" in markdown
    assert "TTFT p50 ms" in (run_folder / "report.html").read_text()


def test_generate_on_bert_is_refused_by_the_cli_with_exit_2_naming_the_field(tmp_path):
    refused = benchboard("run", "--models", "bert-tiny", "--scenario", "generate", "--db-path",
                         str(tmp_path / "r.duckdb"), "--results-dir", str(tmp_path / "results"), timeout=300)
    assert refused.returncode == 2, refused.stderr
    assert "scenario" in refused.stderr and "bert-tiny (encoder) cannot generate" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    settings = Settings(db_path=str(root / "b.duckdb"), results_dir=str(root / "results"), log_dir=str(root / "logs"),
                        prestart_workers=False, allowed_hosts=["testserver.local"])
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.mark.parametrize(("body", "field", "reason"), [
    ({"models": ["bert-tiny"], "scenario": "generate"}, "scenario", "bert-tiny (encoder) cannot generate"),
    ({"models": ["vit-tiny"], "scenario": "generate"}, "scenario", "vit-tiny (vision) cannot generate"),
    ({"models": ["gpt2-tiny"], "scenario": "beam"}, "scenario", "must be one of forward, generate"),
    ({"models": ["gpt2-tiny"], "scenario": "generate", "new_tokens": 1}, "new_tokens", "must be at least 2"),
    ({"models": ["gpt2-tiny"], "scenario": "generate", "timing": "throughput"}, "timing", "leave timing unset"),
])
def test_the_api_refuses_generate_it_cannot_run_with_a_400_naming_the_field(api, body, field, reason):
    reply = api.post("/api/benchmark/run", json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["field"] == field
    assert reason in reply.json()["reason"]


def test_the_client_and_remote_cli_send_the_scenario(server, capsys):
    with BenchmarkAPIClient(server.url) as client, pytest.raises(BenchmarkAPIError) as refused:
        client.start_benchmark(models=["bert-tiny"], scenario="generate", new_tokens=8)
    assert (refused.value.status_code, refused.value.field) == (400, "scenario")
    parser = argparse.ArgumentParser(prog="benchboard")
    add_remote_parser(parser.add_subparsers(dest="command", required=True))
    code = run_remote(parser.parse_args(["remote", "start", "--url", server.url, "--models", "bert-tiny",
                                         "--scenario", "generate", "--new-tokens", "8"]))
    assert code == 2  # refused as invalid, as `benchboard run` refuses it
    assert "cannot generate" in capsys.readouterr().err


def test_the_run_form_offers_the_scenario_and_new_tokens(api):
    page = api.get("/runs")
    assert page.status_code == 200
    assert '<select id="run-scenario" name="scenario"' in page.text
    assert '<option value="generate">generate</option>' in page.text
    assert 'name="new_tokens" value="32"' in page.text
