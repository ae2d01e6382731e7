"""A database with generate results (issue 11), written before its server starts.

Seeded, not measured: the figures are chosen so a page that shows them can be checked
against what is stored. gpt2-tiny (a decoder) and t5-tiny (an encoder-decoder) generate 16
new tokens from a 64-token prompt on one CPU at fp32, at batch sizes 1, 2 and 4, in the run
``seeded-generate``; bert-tiny's forward passes (run ``seeded-forward``) sit beside them, so
the pages must keep both scenarios apart. Each result's seeded generations (a TTFT and
N - 1 gaps each, around the FIGURES below) are summarised by the engine's own functions
(engine.stats.summarize, engine.generation.generation_figures), so its figures hang together
as a measured result's do, raw TTFT samples and per-token gaps kept.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import msgspec
from descriptions import CPU, model_description, result_store, stored_run
from engine.config import BenchmarkConfig
from engine.generation import generation_figures
from engine.result import Measurement
from engine.runs import RunRequest
from engine.stats import summarize
from storage.database import Database
from storage.runs import save_run
from webapp.reporting.reports import write_reports

FINGERPRINT = "seeded-generation-environment"
NEW_TOKENS = 16
PROMPT = 64
BATCH_SIZES = (1, 2, 4)
GENERATORS = {
    "gpt2-tiny": model_description("gpt2-tiny", "gpt2", type="decoder"),
    "t5-tiny": model_description("t5-tiny", "t5", type="encoder-decoder"),
}
BERT = model_description("bert-tiny", "bert")
# (TTFT ms, TPOT ms) per model and batch size: the prefill grows with the batch, a decoding step a little.
FIGURES = {
    "gpt2-tiny": {1: (3.0, 0.8), 2: (5.0, 0.9), 4: (9.0, 1.1)},
    "t5-tiny": {1: (4.0, 1.2), 2: (6.5, 1.3), 4: (11.0, 1.6)},
}
SAMPLES = 20  # generations per result
RUNS = {
    "seeded-generate": RunRequest(models=list(GENERATORS), batch_sizes=list(BATCH_SIZES), sequence_length=PROMPT,
                                  scenario="generate", new_tokens=NEW_TOKENS),
    "seeded-forward": RunRequest(models=["bert-tiny"], batch_sizes=[1, 2], sequence_length=PROMPT),
}


def jittered(rng: random.Random, value: float, count: int) -> list[float]:
    return [round(value * (1 + rng.uniform(-0.03, 0.03)), 4) for _ in range(count)]


def generations(model: str, batch_size: int) -> tuple[list[float], list[list[float]]]:
    """Each seeded generation's TTFT, and its N - 1 gaps between consecutive tokens."""
    ttft, tpot = FIGURES[model][batch_size]
    rng = random.Random(f"{model}-{batch_size}")
    return jittered(rng, ttft, SAMPLES), [jittered(rng, tpot, NEW_TOKENS - 1) for _ in range(SAMPLES)]


def generation(model: str, batch_size: int) -> Measurement:
    """The seeded generations summarised by the engine's own functions, as a worker would."""
    ttfts, gaps = generations(model, batch_size)
    e2e = [round(first + sum(rest), 4) for first, rest in zip(ttfts, gaps, strict=True)]
    stats = summarize(e2e, sum(e2e) / 1e3, ci_target=0.02)
    figures = generation_figures(
        ttfts, [sum(rest) / len(rest) for rest in gaps], [gap for rest in gaps for gap in rest],
        e2e_median_ms=stats.p50_latency_ms, batch_size=batch_size, new_tokens=NEW_TOKENS, prompt_tokens=PROMPT,
        keep_samples=10_000,
    )
    config = BenchmarkConfig(model_name=model, hardware="cpu", batch_size=batch_size, precision="fp32",
                             sequence_length=PROMPT, scenario="generate", new_tokens=NEW_TOKENS, timing="latency")
    items_per_second = batch_size * len(e2e) / stats.total_timed_seconds
    return Measurement.of(
        config, **msgspec.structs.asdict(stats), **figures, samples_ms=e2e,
        throughput_items_per_second=items_per_second, throughput_tokens_per_second=items_per_second * NEW_TOKENS,
        memory_peak_mb=10.0 + 2 * batch_size, load_time_ms=90.0, cold_latency_ms=2 * stats.p50_latency_ms,
        wall_seconds=1.5, threads=2, torch_version="2.x", weights="random",
    )


def forward(batch_size: int, p50: float) -> Measurement:
    config = BenchmarkConfig(model_name="bert-tiny", hardware="cpu", batch_size=batch_size, precision="fp32",
                             sequence_length=PROMPT)
    return Measurement.of(
        config, n_samples=50, average_latency_ms=p50, std_latency_ms=p50 * 0.02, min_latency_ms=p50 * 0.95,
        p50_latency_ms=p50, p90_latency_ms=p50 * 1.1, p95_latency_ms=p50 * 1.15, p99_latency_ms=p50 * 1.3,
        max_latency_ms=p50 * 1.4, ci_low_ms=p50 * 0.98, ci_high_ms=p50 * 1.02, ci_met=True,
        throughput_items_per_second=batch_size / p50 * 1000, memory_peak_mb=30.0, wall_seconds=1.0,
        threads=2, torch_version="2.x", weights="random",
    )


def seed(db_path: Path, results_dir: Path | None = None) -> None:
    """The results above in ``db_path``, and each run's report files in ``results_dir`` if given."""
    with Database(db_path) as db:
        store = result_store(db, *GENERATORS.values(), BERT, hardware=(CPU,))
        started = datetime(2026, 2, 3, 10, 0)
        for index, (run_id, request) in enumerate(RUNS.items()):
            configs = len(request.models) * len(request.batch_sizes)
            save_run(db, stored_run(
                run_id, request=request, environment={"cpu": {"cpu_model": "Seeded Test CPU"}},
                fingerprint=FINGERPRINT, total_configs=configs, completed_configs=configs,
                start_time=started + timedelta(minutes=index),
                completion_time=started + timedelta(minutes=index, seconds=20), elapsed_time=20.0,
                created_at=started + timedelta(minutes=index),
            ))
        for model in GENERATORS:
            for batch_size in BATCH_SIZES:
                store.record_result("seeded-generate", generation(model, batch_size), FINGERPRINT)
        for batch_size, p50 in {1: 2.0, 2: 3.5}.items():
            store.record_result("seeded-forward", forward(batch_size, p50), FINGERPRINT)
        for run_id in RUNS if results_dir is not None else ():
            write_reports(db, results_dir, run_id)
