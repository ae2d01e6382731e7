"""Built-in models: transformers architectures built offline from config classes, random weights.

Latency depends on the architecture, not on the weight values, so random
weights measure what pretrained ones would (results record ``weights: random``).

Each family comes in two kinds of size:

* ``<family>-tiny``: about 0.1-0.4 M parameters, builds in milliseconds; for
  tests and quick runs. Whisper's is ``whisper-tiny-random``, because
  ``whisper-tiny`` is the name of OpenAI's real smallest model.
* real shapes named after the checkpoints they copy: ``bert-base-uncased``,
  ``roberta-base``, ``distilbert-base-uncased``, ``gpt2``, ``t5-small``,
  ``bart-base``, ``vit-base-patch16-224``, ``whisper-tiny``, ``whisper-base``,
  ``albert-base-v2``, ``electra-base-discriminator`` and ``smollm-135m`` (the
  Llama architecture at SmolLM-135M's shape).

Each model carries the head it is served with: encoders run bare (feature
extraction), decoders and encoder-decoders with their LM head, ViT with its
classifier. Decoders run with ``use_cache=False``: one forward pass is measured,
and a KV cache nobody reads would only add allocations.

Listing must not build anything, so each row states its exact parameter count;
the tests check every count against a meta-device build of the model. Nor does it
import transformers: its config and model classes are named here and looked up
when a model is built (issue 16).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, partial

from engine.config import DEFAULT_IMAGE_SIZE
from engine.models.hf import BuildFromConfig, ConfigInputs, scenarios_for, tokens_per_item_for
from engine.models.spec import ModelSpec


@dataclass(frozen=True)
class Family:
    architecture: str
    modality: str
    model_class: str
    config_class: str


FAMILIES = {
    "bert": Family("encoder", "text", "BertModel", "BertConfig"),
    "roberta": Family("encoder", "text", "RobertaModel", "RobertaConfig"),
    "distilbert": Family("encoder", "text", "DistilBertModel", "DistilBertConfig"),
    "albert": Family("encoder", "text", "AlbertModel", "AlbertConfig"),
    "electra": Family("encoder", "text", "ElectraModel", "ElectraConfig"),
    "gpt2": Family("decoder", "text", "GPT2LMHeadModel", "GPT2Config"),
    "llama": Family("decoder", "text", "LlamaForCausalLM", "LlamaConfig"),
    "t5": Family("encoder-decoder", "text", "T5ForConditionalGeneration", "T5Config"),
    "bart": Family("encoder-decoder", "text", "BartForConditionalGeneration", "BartConfig"),
    "vit": Family("vision", "image", "ViTForImageClassification", "ViTConfig"),
    "whisper": Family("audio", "audio", "WhisperForConditionalGeneration", "WhisperConfig"),
}


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    family: str
    parameters: int  # exact; checked by the tests against a meta-device build
    config: dict = field(default_factory=dict)
    tier: str = "low"


TINY_VOCAB = 1024
TINY_POSITIONS = 512
# GPT-2's and Whisper's special tokens sit at the end of their real vocabularies;
# a tiny vocabulary needs them inside.
TINY_SPECIAL_TOKENS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
TINY_ENCODER = dict(
    vocab_size=TINY_VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
    max_position_embeddings=TINY_POSITIONS,
)  # fmt: skip
TINY_SEQ2SEQ = dict(
    vocab_size=TINY_VOCAB, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
    decoder_attention_heads=2, encoder_ffn_dim=256, decoder_ffn_dim=256, use_cache=False,
)  # fmt: skip
WHISPER_REAL = dict(
    vocab_size=51865, num_mel_bins=80, max_source_positions=1500, max_target_positions=448, use_cache=False,
)  # fmt: skip

# fmt: off
BUILTIN_MODELS: tuple[BuiltinModel, ...] = (
    # Tiny sizes; the tier is the lowest priority whose default run includes them.
    BuiltinModel("bert-tiny", "bert", 202_688, TINY_ENCODER, tier="critical"),
    BuiltinModel("gpt2-tiny", "gpt2", 198_400, dict(
        vocab_size=TINY_VOCAB, n_embd=64, n_layer=2, n_head=2, n_positions=TINY_POSITIONS, use_cache=False,
        **TINY_SPECIAL_TOKENS), tier="critical"),
    BuiltinModel("distilbert-tiny", "distilbert", 198_400, dict(
        vocab_size=TINY_VOCAB, dim=64, n_layers=2, n_heads=2, hidden_dim=256,
        max_position_embeddings=TINY_POSITIONS), tier="high"),
    BuiltinModel("t5-tiny", "t5", 295_808, dict(
        vocab_size=TINY_VOCAB, d_model=64, d_ff=256, d_kv=32, num_layers=2, num_heads=2, use_cache=False),
        tier="high"),
    BuiltinModel("vit-tiny", "vit", 114_250, dict(
        image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=256, num_labels=10), tier="high"),
    BuiltinModel("roberta-tiny", "roberta", 202_752, {
        **TINY_ENCODER, "max_position_embeddings": TINY_POSITIONS + 2, "type_vocab_size": 1,
        "pad_token_id": 1},
        tier="medium"),
    BuiltinModel("bart-tiny", "bart", 365_056, {
        **TINY_SEQ2SEQ, "max_position_embeddings": TINY_POSITIONS}, tier="medium"),
    BuiltinModel("whisper-tiny-random", "whisper", 363_520, {
        **TINY_SEQ2SEQ, "num_mel_bins": 80, "max_source_positions": 64,
        "max_target_positions": TINY_POSITIONS, "suppress_tokens": None, "begin_suppress_tokens": None,
        **TINY_SPECIAL_TOKENS}, tier="medium"),
    BuiltinModel("albert-tiny", "albert", 105_536, {**TINY_ENCODER, "embedding_size": 32}, tier="medium"),
    BuiltinModel("electra-tiny", "electra", 151_360, {**TINY_ENCODER, "embedding_size": 32}, tier="medium"),
    BuiltinModel("llama-tiny", "llama", 229_696, dict(
        vocab_size=TINY_VOCAB, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=TINY_POSITIONS, use_cache=False),
        tier="medium"),
    # Real shapes.
    BuiltinModel("bert-base-uncased", "bert", 109_482_240),
    BuiltinModel("roberta-base", "roberta", 124_645_632, dict(
        vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, layer_norm_eps=1e-5)),
    BuiltinModel("distilbert-base-uncased", "distilbert", 66_362_880),
    BuiltinModel("gpt2", "gpt2", 124_439_808, dict(use_cache=False)),
    BuiltinModel("t5-small", "t5", 60_506_624, dict(
        vocab_size=32128, d_model=512, d_ff=2048, d_kv=64, num_layers=6, num_heads=8, use_cache=False)),
    BuiltinModel("bart-base", "bart", 139_420_416, dict(
        vocab_size=50265, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
        decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072, max_position_embeddings=1024,
        use_cache=False)),
    BuiltinModel("vit-base-patch16-224", "vit", 86_567_656, dict(
        image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, num_labels=1000)),
    BuiltinModel("whisper-tiny", "whisper", 37_760_640, dict(
        d_model=384, encoder_layers=4, decoder_layers=4, encoder_attention_heads=6, decoder_attention_heads=6,
        encoder_ffn_dim=1536, decoder_ffn_dim=1536, **WHISPER_REAL)),
    BuiltinModel("whisper-base", "whisper", 72_593_920, dict(
        d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8, decoder_attention_heads=8,
        encoder_ffn_dim=2048, decoder_ffn_dim=2048, **WHISPER_REAL)),
    BuiltinModel("albert-base-v2", "albert", 11_683_584, dict(
        vocab_size=30000, embedding_size=128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072)),
    BuiltinModel("electra-base-discriminator", "electra", 108_891_648, dict(
        embedding_size=768, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072)),
    BuiltinModel("smollm-135m", "llama", 134_515_008, dict(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048, tie_word_embeddings=True,
        use_cache=False)),
)
# fmt: on

# A family's name means its real base size.
ALIASES = {
    "bert": "bert-base-uncased",
    "roberta": "roberta-base",
    "distilbert": "distilbert-base-uncased",
    "t5": "t5-small",
    "bart": "bart-base",
    "vit": "vit-base-patch16-224",
    "whisper": "whisper-base",
    "albert": "albert-base-v2",
    "electra": "electra-base-discriminator",
    "llama": "smollm-135m",
}

_BY_NAME = {model.name: model for model in BUILTIN_MODELS}


@cache
def builtin_config(name: str):
    """The transformers config of built-in ``name``; built on first use only."""
    import transformers

    model = _BY_NAME[name]
    return getattr(transformers, FAMILIES[model.family].config_class)(**model.config)


@cache
def builtin_specs() -> dict[str, ModelSpec]:
    """Every built-in model by name."""
    return {model.name: _spec(model) for model in BUILTIN_MODELS}


def _spec(model: BuiltinModel) -> ModelSpec:
    family = FAMILIES[model.family]
    config = partial(builtin_config, model.name)
    return ModelSpec(
        name=model.name,
        family=model.family,
        architecture=family.architecture,
        modality=family.modality,
        parameters_million=model.parameters / 1e6,
        build=BuildFromConfig(family.model_class, config),
        make_inputs=ConfigInputs(model.name, config, family.model_class),
        source="builtin",
        weights="random",
        tier=model.tier,
        tokens_per_item=tokens_per_item_for(family.architecture),
        # Read from the stated config, so listing builds nothing; 224 is ViTConfig's default.
        image_size=model.config.get("image_size", DEFAULT_IMAGE_SIZE) if family.architecture == "vision" else None,
        chooses_attention=True,
        scenarios=scenarios_for(family.architecture, family.model_class),
    )
