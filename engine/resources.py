"""Memory estimates that let the scheduler refuse a config instead of crashing a device."""

from __future__ import annotations

from typing import NamedTuple

from engine.config import BenchmarkConfig

BYTES_PER_PARAMETER = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
# Live activations per token and layer, in hidden-size units: attention scores, MLP
# expansion and residual copies held at once under inference_mode.
ACTIVATION_FACTOR = 16
# Allocator slack and framework buffers on top of the estimate.
OVERHEAD_BYTES = 256 * 1024**2


class KvDims(NamedTuple):
    """What a KV cache's size depends on: decoder layers, key/value heads and their width."""

    layers: int
    kv_heads: int
    head_dim: int
    encoder_decoder: bool = False


def _first(config, *names):
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def kv_dims(model_config) -> KvDims | None:
    """The KV cache dimensions of a transformers ``PretrainedConfig`` (GPT-2's ``n_layer``/``n_head``,
    Llama's ``num_key_value_heads``, T5's ``num_decoder_layers``/``d_kv``...); None where it
    names no layers or heads. Whisper and other audio models keep theirs in the text config."""
    config = getattr(model_config, "text_config", None) or model_config
    encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
    layers = _first(config, "num_decoder_layers", "decoder_layers", "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(config, "decoder_attention_heads", "num_attention_heads", "n_head", "num_heads")
    if layers is None or heads is None:
        return None
    kv_heads = _first(config, "num_key_value_heads") or heads
    hidden = _first(config, "d_model", "hidden_size", "n_embd")
    head_dim = _first(config, "head_dim", "d_kv") or (hidden // heads if hidden else None)
    if head_dim is None:
        return None
    return KvDims(layers, kv_heads, head_dim, encoder_decoder)


def inferred_kv_dims(parameters_million: float) -> KvDims:
    """The rule of thumb's dims (see ``estimate_memory_bytes``): hidden = heads x head_dim, 64-wide heads."""
    hidden = _hidden_size(parameters_million)
    layers = max(1, round(hidden / 64))
    return KvDims(layers, max(1, round(hidden / 64)), 64)


def kv_cache_bytes(config: BenchmarkConfig, dims: KvDims) -> int:
    """The KV cache a ``generate`` config holds at its last token; 0 for a forward config.

    layers x 2 (keys and values) x batch x kv_heads x head_dim x positions x bytes per value, where
    a decoder holds its prompt and the new tokens (``sequence_length + new_tokens``); an
    encoder-decoder's decoder its start token and the new tokens in self-attention, plus the
    encoder's ``sequence_length`` positions in cross-attention.
    """
    if config.scenario != "generate":
        return 0
    new_tokens = config.new_tokens or 0
    prompt = max(config.sequence_length, 1)
    positions = (1 + new_tokens + prompt) if dims.encoder_decoder else prompt + new_tokens
    value_bytes = 2 if config.precision in ("fp16", "bf16") else 4  # int8 (dynamic) keeps fp32 activations
    return dims.layers * 2 * config.batch_size * dims.kv_heads * dims.head_dim * positions * value_bytes


def _hidden_size(parameters_million: float) -> float:
    return max(64.0, (parameters_million * 1e6 * 64 / 12) ** (1 / 3))


def estimate_memory_bytes(config: BenchmarkConfig, parameters_million: float, model_config=None) -> int:
    """Weights plus activations, plus a generation's KV cache (``kv_cache_bytes``). Hidden size and
    depth are inferred from the parameter count with the transformer rule of thumb
    params ~= 12 * layers * hidden^2, taking layers ~= hidden / 64 (BERT-base: 12 layers, 768
    hidden); the KV cache's dims come from ``model_config`` (a transformers config) where one is
    given, else from the same rule."""
    parameters = parameters_million * 1e6
    weights = parameters * BYTES_PER_PARAMETER[config.precision]
    hidden = _hidden_size(parameters_million)
    activation_bytes = 2 if config.precision in ("fp16", "bf16") else 4
    tokens = config.batch_size * max(config.sequence_length, 1)
    activations = tokens * hidden * ACTIVATION_FACTOR * activation_bytes
    dims = (kv_dims(model_config) if model_config is not None else None) or inferred_kv_dims(parameters_million)
    return int(weights + activations + kv_cache_bytes(config, dims) + OVERHEAD_BYTES)


def refusal_reason(config: BenchmarkConfig, parameters_million: float, free_bytes: int) -> str | None:
    """None when the config should fit, else the reason it is refused."""
    needed = estimate_memory_bytes(config, parameters_million)
    if needed <= free_bytes:
        return None
    return f"needs ~{needed / 1024**3:.1f} GB, device {config.hardware} has {free_bytes / 1024**3:.1f} GB free"
