"""The scheduler's memory estimate: a generate config's KV cache is counted (issue 11)."""

from __future__ import annotations

import transformers

from engine.config import BenchmarkConfig
from engine.resources import KvDims, estimate_memory_bytes, inferred_kv_dims, kv_cache_bytes, kv_dims


def config(**fields) -> BenchmarkConfig:
    return BenchmarkConfig(**{"model_name": "m", "hardware": "cpu", "batch_size": 4, "sequence_length": 128,
                              **fields})


def generate(**fields) -> BenchmarkConfig:
    return config(**{"scenario": "generate", "new_tokens": 32, **fields})


def test_a_decoder_holds_layers_x_2_x_batch_x_heads_x_head_dim_x_prompt_and_new_tokens():
    gpt2 = transformers.GPT2Config(n_layer=12, n_head=12, n_embd=768)
    assert kv_dims(gpt2) == KvDims(layers=12, kv_heads=12, head_dim=64, encoder_decoder=False)
    assert kv_cache_bytes(generate(), kv_dims(gpt2)) == 12 * 2 * 4 * 12 * 64 * (128 + 32) * 4
    # half-precision caches take 2 bytes a value
    assert kv_cache_bytes(generate(precision="fp16"), kv_dims(gpt2)) == 12 * 2 * 4 * 12 * 64 * 160 * 2


def test_grouped_query_attention_caches_only_the_key_value_heads():
    llama = transformers.LlamaConfig(num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                                     hidden_size=256)
    dims = kv_dims(llama)
    assert dims == KvDims(layers=4, kv_heads=2, head_dim=32, encoder_decoder=False)
    assert kv_cache_bytes(generate(), dims) == 4 * 2 * 4 * 2 * 32 * 160 * 4


def test_an_encoder_decoder_caches_its_decoder_tokens_and_the_encoders_positions():
    t5 = transformers.T5Config(num_layers=6, num_decoder_layers=3, num_heads=4, d_kv=16, d_model=64)
    dims = kv_dims(t5)
    assert dims == KvDims(layers=3, kv_heads=4, head_dim=16, encoder_decoder=True)
    # self-attention: the start token and 32 new ones; cross-attention: the 128 encoder positions
    assert kv_cache_bytes(generate(), dims) == 3 * 2 * 4 * 4 * 16 * (1 + 32 + 128) * 4


def test_the_estimate_adds_the_kv_cache_to_a_generate_config_only():
    gpt2 = transformers.GPT2Config(n_layer=12, n_head=12, n_embd=768)
    forward = estimate_memory_bytes(config(), 124.0, gpt2)
    assert kv_cache_bytes(config(), kv_dims(gpt2)) == 0
    assert estimate_memory_bytes(generate(), 124.0, gpt2) - forward == kv_cache_bytes(generate(), kv_dims(gpt2))
    # More new tokens, a bigger batch: a bigger estimate (what progressive mode escalates into).
    assert estimate_memory_bytes(generate(new_tokens=1024), 124.0, gpt2) > estimate_memory_bytes(generate(), 124.0, gpt2)


def test_without_a_model_config_the_parameter_counts_rule_of_thumb_sizes_the_cache():
    # The scheduler knows a model's parameter count only: BERT-base's ~110M gives ~12 layers of 768.
    dims = inferred_kv_dims(110.0)
    assert 10 <= dims.layers <= 14 and 600 <= dims.kv_heads * dims.head_dim <= 900
    assert estimate_memory_bytes(generate(), 110.0) - estimate_memory_bytes(config(), 110.0) == kv_cache_bytes(
        generate(), dims
    ) > 0
    # A config that names no layers or heads falls back to the rule too.
    assert kv_dims(object()) is None
    assert estimate_memory_bytes(generate(), 110.0, object()) == estimate_memory_bytes(generate(), 110.0)
