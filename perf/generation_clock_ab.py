"""What benchboard's token clock costs a generation: an interleaved A/B on one model, in one process.

    python perf/generation_clock_ab.py [--model gpt2-tiny] [--batch-size 1] [--rounds 100] [--cpu-time]

One built-in model (random weights), 64 prompt tokens, 32 new ones, greedy, KV cache, 1 thread,
the generation settings of ``engine.generation.GenerationSession``. Each round times, call by call
and in an order that rotates from round to round:

* plain ``generate()``: ``T(1)``, ``T(33)`` and ``T(32)`` (the reference's TPOT is
  ``(T(33) - T(1)) / 32``, as in generation_accuracy.py);
* ``T(32)`` with the clock as it was before issue 11's fix (a ``LogitsProcessor`` whose
  ``__call__`` is a bound method: transformers' ``LogitsProcessorList`` rebuilds its signature
  at every token) and with ``engine.generation.TokenClock`` (a signature made once); each gives
  its mean gap between consecutive tokens, benchboard's TPOT.

It prints the Python calls each clock adds a token (cProfile counts: the same on a loaded
machine) and, as medians over rounds of each round's ratio, each clock's TPOT over the plain
reference's and the new clock's over the old one's. ``--cpu-time`` reads the thread's CPU time
(``time.thread_time_ns``) instead of the wall clock, calls and stamps alike: on a machine other
processes load, it counts this thread's work, not its waits (perf/README.md, generation_accuracy.py,
"19:00-19:50").
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402

import engine.generation as generation  # noqa: E402
from engine.models.builtin import builtin_specs  # noqa: E402

NEW_TOKENS = 32
PROMPT = 64


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2-tiny")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--cpu-time", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    clock = time.thread_time_ns if args.cpu_time else time.perf_counter_ns
    # TokenClock reads engine.generation's time.perf_counter_ns: point it at the same clock.
    generation.time = type("Clock", (), {"perf_counter_ns": staticmethod(clock)})

    class OldTokenClock(transformers.LogitsProcessor):
        """engine.generation.TokenClock before the fix: a bound ``__call__``."""

        def __init__(self):
            self.stamps_ns = []

        def __call__(self, input_ids, scores):
            self.stamps_ns.append(clock())
            return scores

    spec = builtin_specs()[args.model]
    model = spec.build(attn_implementation="sdpa").eval()
    inputs = generation.generation_inputs(spec.make_inputs(args.batch_size, PROMPT, None))
    session = generation.GenerationSession(model, args.model, inputs, NEW_TOKENS, "cpu")
    plain = {k: v for k, v in session.generate_kwargs.items()
             if k not in ("logits_processor", "max_new_tokens", "min_new_tokens")}
    clocks = {"old": OldTokenClock(), "new": generation.TokenClock(None)}

    def kwargs(tokens, which):
        chosen = dict(plain, max_new_tokens=tokens, min_new_tokens=tokens)
        if which != "plain":
            chosen["logits_processor"] = transformers.LogitsProcessorList([clocks[which]])
        return chosen

    def run(tokens, which):
        if which != "plain":
            clocks[which].stamps_ns.clear()
        started = clock()
        model.generate(**inputs, **kwargs(tokens, which))
        return (clock() - started) / 1e6

    def python_calls(which):
        profile = cProfile.Profile()
        profile.enable()
        model.generate(**inputs, **kwargs(NEW_TOKENS, which))
        profile.disable()
        return sum(entry[1] for entry in pstats.Stats(profile).stats.values())

    variants = [(1, "plain"), (NEW_TOKENS + 1, "plain"), (NEW_TOKENS, "plain"), (NEW_TOKENS, "old"),
                (NEW_TOKENS, "new")]
    times = {variant: [] for variant in variants}
    gaps = {"old": [], "new": []}
    print(f"{args.model} bs{args.batch_size}, {PROMPT} prompt + {NEW_TOKENS} new tokens, {args.rounds} rounds, "
          f"{'thread CPU time' if args.cpu_time else 'wall clock'}; load before "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with torch.inference_mode(), generation.quiet_transformers():
        for variant in variants:  # warm-up
            run(*variant)
            run(*variant)
        calls = {which: python_calls(which) for which in ("plain", "old", "new")}
        collecting = gc.isenabled()
        gc.disable()
        try:
            for round_ in range(args.rounds):
                shift = round_ % len(variants)
                for variant in variants[shift:] + variants[:shift]:
                    times[variant].append(run(*variant))
                    if variant[1] != "plain":
                        stamps = clocks[variant[1]].stamps_ns
                        gaps[variant[1]].append((stamps[-1] - stamps[0]) / (len(stamps) - 1) / 1e6)
        finally:
            if collecting:
                gc.enable()
    median = statistics.median
    reference = [(longer - first) / NEW_TOKENS
                 for longer, first in zip(times[(NEW_TOKENS + 1, "plain")], times[(1, "plain")], strict=True)]
    print(f"python calls: plain generate() {calls['plain']:,} ({calls['plain'] / NEW_TOKENS:,.0f} a token); "
          f"old clock +{(calls['old'] - calls['plain']) / NEW_TOKENS:.0f} a token, "
          f"new clock +{(calls['new'] - calls['plain']) / NEW_TOKENS:.0f}")
    print(f"plain reference TPOT (T({NEW_TOKENS + 1}) - T(1)) / {NEW_TOKENS}: {median(reference):.4f} ms")
    for which in ("old", "new"):
        ratio = median(gap / ref for gap, ref in zip(gaps[which], reference, strict=True))
        print(f"{which} clock: TPOT {median(gaps[which]):.4f} ms, over the plain reference {ratio:.4f}")
    new_over_old = median(new / old for new, old in zip(gaps["new"], gaps["old"], strict=True))
    e2e = median(new / old for new, old in zip(times[(NEW_TOKENS, "new")], times[(NEW_TOKENS, "old")], strict=True))
    print(f"new clock over old: TPOT {new_over_old:.4f}, e2e({NEW_TOKENS}) {e2e:.4f}")
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
