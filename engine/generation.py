"""The generate scenario, inside a worker: greedy decoding with the KV cache, timed token by token.

One sample is one call of the model's ``generate()`` on the config's batch, greedy
(``do_sample=False``, one beam), KV cache on, ``min_new_tokens = max_new_tokens = N`` so
every sample produces exactly N tokens. Of each sample we keep:

* **end to end**: from the call to its return, with a device sync before the clock is read;
  the adaptive loop stops on its median (``engine.timing.time_callable``, the same stopping
  rule as every forward config), and the result's latency statistics are of it;
* **TTFT** (time to first token): from the call to the first token's logits, i.e. the
  prefill (the prompt's forward pass, and for an encoder-decoder its encoder's);
* **per-token gaps**: between the logits of consecutive tokens after the first; a sample's
  TPOT (time per output token) is their mean, its decode time their sum.

How tokens are timed: a ``LogitsProcessor`` appended to ``generate()``'s own, which reads the
clock each time it is handed a step's logits, after a device synchronize. Not a streamer: a
streamer's ``put`` gets the prompt first (decoders) or the decoder start token
(encoder-decoders) and then each token after it was chosen, so its first call is no token's
logits and its timing differs by architecture. Not an explicit loop over
``past_key_values``: that would time our own re-implementation of decoding (cache classes,
encoder outputs, Whisper's own ``generate``), not the ``generate()`` users call. The
processor is called exactly once per generated token, at the moment that token's logits
exist, by every model built on transformers' ``GenerationMixin``, Whisper included; a
generation that calls it any other number of times fails the config, rather than being
misread. On a GPU, the forward pass that produced the logits is still queued when the
processor runs, so ``torch.cuda.synchronize()`` comes before every clock reading (the GPU
then idles for the host's few microseconds between tokens, as it does in any ``generate()``
that checks its stopping criteria); the host clock then reads when the logits exist.
CUDA events would need the same syncs, so the host clock serves every device.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import Callable

import torch
import transformers

from engine.config import MeasurementSettings
from engine.errors import UnsupportedConfigError
from engine.models.hf import max_sequence_length
from engine.stats import median_ci, percentile
from engine.timing import NS_PER_MS, TimedLoop, device_synchronizer, kept_samples, time_callable

# Entries of make_inputs() that belong to a forward pass of the decoder, not to a generation:
# generate() starts the decoder itself (from decoder_start_token_id).
DECODER_INPUTS = ("decoder_input_ids", "decoder_attention_mask")


class TokenClock(transformers.LogitsProcessor):
    """Reads the clock each time a step's logits reach the logits processors (see the module
    docstring); changes nothing in the scores.

    Its own cost lands in every per-token gap, and plain ``generate()`` does not pay it, so it
    is kept to a few Python calls. transformers' ``LogitsProcessorList`` asks
    ``inspect.signature(processor.__call__)`` of every processor at every token (to see whether
    it takes extra keyword arguments); for a bound method that builds a new Signature each
    time, about 78 Python calls, which on this 2-core VM measured 3-7% of a tiny model's time
    per token (perf/README.md, generation_accuracy.py). So the instance carries, as its
    ``__call__`` attribute, a plain function with its signature made once (``__signature__``,
    which inspect returns as it finds it: ~18 calls). Calling the processor goes through the
    class's ``__call__`` (Python looks special methods up on the type), to the same function.
    """

    def __init__(self, sync: Callable[[], None] | None):
        self.stamps_ns: list[int] = []

        def stamp(input_ids, scores):
            if sync is not None:
                sync()
            self.stamps_ns.append(time.perf_counter_ns())
            return scores

        stamp.__signature__ = inspect.signature(stamp)
        self.__call__ = self._stamp = stamp  # what LogitsProcessorList's inspect.signature reads

    def __call__(self, input_ids, scores):
        return self._stamp(input_ids, scores)


def generation_inputs(inputs: dict) -> dict:
    """``make_inputs``' keyword arguments as ``generate()`` takes them: the prompt (input ids and
    mask, or Whisper's audio features), without the decoder's tokens."""
    return {name: value for name, value in inputs.items() if name not in DECODER_INPUTS}


def prompt_tokens(inputs: dict) -> int | None:
    """The tokens one item of the prompt carries: its input ids, or for an audio model the
    positions its encoder makes of the features (Whisper's stride-2 convolution halves the
    frames); None where neither is there."""
    ids = inputs.get("input_ids")
    if isinstance(ids, torch.Tensor):
        return int(ids.shape[-1])
    features = inputs.get("input_features")
    if isinstance(features, torch.Tensor):
        return int(features.shape[-1]) // 2
    return None


def _special_tokens(model) -> dict:
    """Token ids generate() needs and a random-weights config may lack: the padding id (else the
    end-of-sequence id, else 0) and an encoder-decoder's decoder start (else its bos, pad or 0)."""
    generation_config = getattr(model, "generation_config", None)
    config = getattr(model, "config", None)

    def first(*names):
        for source in (generation_config, config):
            for name in names:
                value = getattr(source, name, None)
                if isinstance(value, (list, tuple)):
                    value = value[0] if value else None
                if value is not None:
                    return value
        return 0

    tokens = {"pad_token_id": first("pad_token_id", "eos_token_id")}
    if getattr(config, "is_encoder_decoder", False):
        tokens["decoder_start_token_id"] = first("decoder_start_token_id", "bos_token_id", "pad_token_id")
    return tokens


def check_positions(model, model_name: str, inputs: dict, new_tokens: int) -> None:
    """UnsupportedConfigError where the decoder would run past its position embeddings: a
    decoder holds prompt + new tokens, an encoder-decoder's decoder its start token + new ones."""
    config = getattr(model, "config", None)
    if config is None:
        return
    limit = max_sequence_length(config)
    if limit is None:
        return
    encoder_decoder = getattr(config, "is_encoder_decoder", False)
    held = 1 + new_tokens if encoder_decoder else (prompt_tokens(inputs) or 0) + new_tokens
    if held > limit:
        what = "1 start token" if encoder_decoder else f"sequence_length {prompt_tokens(inputs)}"
        raise UnsupportedConfigError(
            f"{what} + new_tokens {new_tokens} is {held} decoder positions, more than {model_name} has ({limit})"
        )


class GenerationSession:
    """Timed generations of one config: ``generate`` runs one, ``timer`` times one the way
    ``engine.timing``'s timers time a call (nanoseconds, end to end) and keeps its TTFT and
    per-token gaps; ``timed_loop`` is the adaptive loop; ``figures`` the result's fields."""

    def __init__(self, model, model_name: str, inputs: dict, new_tokens: int, device_type: str):
        self._model = model
        self._inputs = generation_inputs(inputs)
        self._new_tokens = new_tokens
        self._sync = device_synchronizer(device_type)
        self._clock = TokenClock(self._sync)
        check_positions(model, model_name, self._inputs, new_tokens)
        self.generate_kwargs = {
            "do_sample": False, "num_beams": 1, "use_cache": True,
            "max_new_tokens": new_tokens, "min_new_tokens": new_tokens,
            "logits_processor": transformers.LogitsProcessorList([self._clock]),
            **_special_tokens(model),
        }
        self.prompt_tokens = prompt_tokens(self._inputs)
        self.ttft_ns: list[int] = []
        self.gaps_ns: list[int] = []
        self.tpot_ns: list[float] = []  # one per sample: its mean gap

    def generate(self):
        self._clock.stamps_ns.clear()
        return self._model.generate(**self._inputs, **self.generate_kwargs)

    def timer(self, fn: Callable[[], object]) -> int:
        clock = time.perf_counter_ns
        started = clock()
        fn()
        if self._sync is not None:
            self._sync()
        elapsed = clock() - started
        stamps = self._clock.stamps_ns
        if len(stamps) != self._new_tokens:
            raise RuntimeError(
                f"generate() handed {len(stamps)} steps' logits to the logits processors, not one per "
                f"each of the {self._new_tokens} tokens asked for; its per-token timing cannot be read"
            )
        self.ttft_ns.append(stamps[0] - started)
        gaps = [later - earlier for earlier, later in zip(stamps, stamps[1:])]
        self.gaps_ns.extend(gaps)
        self.tpot_ns.append(sum(gaps) / len(gaps))
        return elapsed

    def reset(self) -> None:
        """Forget the generations timed so far (the cold one, the warm-up)."""
        self.ttft_ns.clear()
        self.gaps_ns.clear()
        self.tpot_ns.clear()

    def timed_loop(self, settings: MeasurementSettings) -> TimedLoop:
        """The adaptive loop over whole generations, stopping on the end-to-end median."""
        self.reset()
        samples_ms, total_seconds = time_callable(self.generate, settings, timer=self.timer)
        return TimedLoop(samples_ms, total_seconds, 1)

    def figures(self, batch_size: int, keep_samples: int, e2e_median_ms: float) -> dict:
        """The Measurement fields of a generation, from the samples of ``timed_loop``."""
        return generation_figures(
            [value / NS_PER_MS for value in self.ttft_ns],
            [value / NS_PER_MS for value in self.tpot_ns],
            [value / NS_PER_MS for value in self.gaps_ns],
            e2e_median_ms=e2e_median_ms, batch_size=batch_size, new_tokens=self._new_tokens,
            prompt_tokens=self.prompt_tokens, keep_samples=keep_samples,
        )


def generation_figures(
    ttft_ms: list[float],
    tpot_ms: list[float],
    gaps_ms: list[float],
    *,
    e2e_median_ms: float,
    batch_size: int,
    new_tokens: int,
    prompt_tokens: int | None,
    keep_samples: int,
) -> dict:
    """TTFT and TPOT statistics and the token rates, as Measurement fields (pure).

    ``ttft_ms`` and ``tpot_ms`` hold one value per sample, ``gaps_ms`` every per-token gap.
    TPOT's median and its CI are over samples; its p90/p99 over the gaps, where a slow token
    is not averaged away. Decode tokens/s is ``batch_size * (new_tokens - 1)`` over the median
    decode seconds (a sample's decode time is its TPOT times ``new_tokens - 1``), prefill
    tokens/s ``batch_size * prompt_tokens`` over the median TTFT.
    """
    ttft, tpot, gaps = sorted(ttft_ms), sorted(tpot_ms), sorted(gaps_ms)
    ttft_median, tpot_median = percentile(ttft, 50), percentile(tpot, 50)
    ttft_low, ttft_high = median_ci(ttft)
    tpot_low, tpot_high = median_ci(tpot)
    decode_seconds = tpot_median * (new_tokens - 1) / 1e3
    return {
        "ttft_ms": ttft_median,
        "ttft_p90_ms": percentile(ttft, 90),
        "ttft_p99_ms": percentile(ttft, 99),
        "ttft_ci_low_ms": ttft_low,
        "ttft_ci_high_ms": ttft_high,
        "tpot_ms": tpot_median,
        "tpot_p90_ms": percentile(gaps, 90),
        "tpot_p99_ms": percentile(gaps, 99),
        "tpot_ci_low_ms": tpot_low,
        "tpot_ci_high_ms": tpot_high,
        "e2e_ms": e2e_median_ms,
        "decode_tokens_per_second": batch_size * (new_tokens - 1) / decode_seconds if decode_seconds > 0 else None,
        "prefill_tokens_per_second": (
            batch_size * prompt_tokens / (ttft_median / 1e3) if prompt_tokens and ttft_median > 0 else None
        ),
        "ttft_samples_ms": kept_samples(ttft_ms, keep_samples),
        "tpot_samples_ms": kept_samples(gaps_ms, keep_samples),
    }


@contextlib.contextmanager
def quiet_transformers():
    """transformers logs the same notes about generation settings at every call (max_length
    beside max_new_tokens, Whisper's suppress tokens); in a timed loop they would only flood
    the worker's stderr."""
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
