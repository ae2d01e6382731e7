"""What a transformers config describes: its kind, its inputs, its parameter count, its builder.

Built-in models and checkpoints (local or Hub) share this, so a checkpoint gets
the same inputs a built-in of its family gets.

torch and transformers are imported by the functions that build models, inputs or read a
checkpoint's config, not by this module: listing the built-ins and planning a run of them
imports neither (issue 16: a server starts in a fraction of a second, not ~3 s of imports).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from engine.config import GENERATE_ARCHITECTURES
from engine.errors import UnsupportedConfigError
from engine.models.spec import FORWARD_ONLY, GENERATE_SCENARIOS

if TYPE_CHECKING:
    import torch

INPUT_SEED = 0
WEIGHT_SEED = 0
# Model types whose learned positions start after the padding index (RoBERTa's offset of pad + 1).
_PADDING_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert")


def architecture_and_modality(config: Any) -> tuple[str, str]:
    """The architecture type (see ``ARCHITECTURE_TYPES``) and modality a config describes."""
    if hasattr(config, "num_mel_bins"):
        return "audio", "audio"
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder", "text"
    if getattr(config, "vocab_size", None) is None and hasattr(config, "image_size"):
        return "vision", "image"
    if _is_decoder(config):
        return "decoder", "text"
    return "encoder", "text"


def sequence_tokens(sequence_length: int) -> int:
    """Tokens one item carries for text and speech models: the requested sequence length."""
    return sequence_length


def tokens_per_item_for(architecture: str) -> Callable[[int], int] | None:
    return None if architecture == "vision" else sequence_tokens


# transformers' classes with a generation head, by their names: asking a class itself
# (can_generate) would import its modeling module, and listing models imports nothing.
GENERATING_CLASS_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration", "ForSpeechSeq2Seq")


def scenarios_for(architecture: str, model_class: str) -> tuple[str, ...]:
    """forward for every model; generate too for a decoder, encoder-decoder or audio model
    with a generation head (GPT2LMHeadModel has one, a bare GPT2Model has none)."""
    if architecture in GENERATE_ARCHITECTURES and model_class.endswith(GENERATING_CLASS_SUFFIXES):
        return GENERATE_SCENARIOS
    return FORWARD_ONLY


@dataclass(frozen=True)
class ConfigInputs:
    """``make_inputs`` for a transformers model, shaped from its config.

    Text models get ``sequence_length`` tokens (encoder-decoders as many decoder
    tokens too); speech models get the log-mel frames their encoder requires and
    ``sequence_length`` decoder tokens. Vision models get ``image_size`` square
    images (None: the config's own size). A size other than the config's needs a
    model that interpolates its learned position embeddings (ViT's
    ``interpolate_pos_encoding=True``, passed along with the pixels) and a whole
    number of patches; anything else is refused with the reason
    (``UnsupportedConfigError``), never silently run at another size.

    ``config`` returns the transformers config when called; it is asked only
    here, so listing models never builds configs. ``model_class`` is the
    transformers class the inputs are for, where known.
    """

    model_name: str
    config: Callable[[], Any]
    model_class: str | None = None

    def __call__(self, batch_size: int, sequence_length: int, image_size: int | None) -> dict:
        import torch

        config = self.config()
        generator = torch.Generator().manual_seed(INPUT_SEED)
        architecture, _modality = architecture_and_modality(config)
        if architecture == "vision":
            size = image_size or native_image_size(config)
            shape = (batch_size, config.num_channels, size, size)
            inputs = {"pixel_values": torch.randn(shape, generator=generator)}
            if size != native_image_size(config):
                self._check_image_size(config, size)
                inputs["interpolate_pos_encoding"] = True
            return inputs
        self._check_sequence_length(config, sequence_length)
        tokens = _token_ids(config, batch_size, sequence_length, generator)
        if architecture == "audio":
            frames = 2 * config.max_source_positions  # the encoder's stride-2 conv halves the frames
            features = torch.randn((batch_size, config.num_mel_bins, frames), generator=generator)
            return {"input_features": features, "decoder_input_ids": tokens}
        inputs = {"input_ids": tokens, "attention_mask": torch.ones_like(tokens)}
        if architecture == "encoder-decoder":
            inputs["decoder_input_ids"] = _token_ids(config, batch_size, sequence_length, generator)
        return inputs

    def _check_image_size(self, config: Any, size: int) -> None:
        native = native_image_size(config)
        if not self.model_class or not _forward_takes(self.model_class, "interpolate_pos_encoding"):
            raise UnsupportedConfigError(
                f"{self.model_name} runs at image size {native} only: its position embeddings are fixed "
                f"and it cannot interpolate them to {size}"
            )
        patch = getattr(config, "patch_size", None)
        patch = patch[0] if isinstance(patch, (list, tuple)) else patch
        if patch and size % patch:
            raise UnsupportedConfigError(
                f"image size {size} is not a whole number of {self.model_name}'s {patch}-pixel patches; "
                f"use a multiple of {patch}"
            )

    def _check_sequence_length(self, config: Any, sequence_length: int) -> None:
        limit = max_sequence_length(config)
        if sequence_length < 1:
            raise ValueError(f"sequence_length must be at least 1, got {sequence_length}")
        if limit is not None and sequence_length > limit:
            # The model cannot take it, as with an image size its embeddings cannot: incompatible.
            raise UnsupportedConfigError(
                f"sequence_length {sequence_length} is longer than {self.model_name} accepts ({limit} tokens)"
            )


def _token_ids(config: Any, batch_size: int, sequence_length: int, generator: torch.Generator):
    import torch

    return torch.randint(0, config.vocab_size, (batch_size, sequence_length), generator=generator)


def max_sequence_length(config: Any) -> int | None:
    """The most tokens the model's position embeddings allow, or None where they set no limit (T5)."""
    if hasattr(config, "max_target_positions"):
        return config.max_target_positions
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and getattr(config, "model_type", "") in _PADDING_OFFSET_POSITIONS:
        limit -= (config.pad_token_id or 0) + 1
    return limit


def native_image_size(config: Any) -> int:
    """The square image size a vision config is made for."""
    size = getattr(config, "image_size", 224)
    return size[0] if isinstance(size, (list, tuple)) else int(size)


@cache
def _forward_takes(model_class: str, argument: str) -> bool:
    import transformers

    forward = getattr(getattr(transformers, model_class, None), "forward", None)
    return forward is not None and argument in inspect.signature(forward).parameters


def with_attn_implementation(config: Any, attn_implementation: str | None) -> Any:
    """A copy of ``config`` asking transformers for ``attn_implementation`` (None: the config as it is)."""
    if attn_implementation is None:
        return config
    config = copy.deepcopy(config)
    config._attn_implementation = attn_implementation
    return config


def attention_refusal(model_class: str, attn_implementation: str, error: Exception) -> UnsupportedConfigError:
    """transformers' refusal of an attention implementation, as the reason a config is incompatible."""
    reason = str(error).split(". ")[0].strip().rstrip(".")
    return UnsupportedConfigError(f"{model_class} cannot use attn_implementation {attn_implementation}: {reason}")


@dataclass(frozen=True)
class BuildFromConfig:
    """``build`` for a randomly initialised model; seeded, so every build has the same weights.

    ``attn_implementation`` (sdpa, eager, flash_attention_2) is handed to transformers, which
    refuses one the model lacks; that refusal is an ``UnsupportedConfigError``.
    """

    model_class: str
    config: Callable[[], Any]

    def __call__(self, attn_implementation: str | None = None) -> torch.nn.Module:
        import torch
        import transformers

        torch.manual_seed(WEIGHT_SEED)
        config = with_attn_implementation(self.config(), attn_implementation)
        try:
            model = getattr(transformers, self.model_class)(config)
        except (ValueError, ImportError) as error:
            if attn_implementation is None:
                raise
            raise attention_refusal(self.model_class, attn_implementation, error) from error
        return model.eval()


def count_parameters(model_class: str, config: Any) -> int:
    """Parameters of the model, counted on the meta device: no memory, no initialisation."""
    import torch
    import transformers

    with torch.device("meta"):
        model = getattr(transformers, model_class)(config)
    return sum(parameter.numel() for parameter in model.parameters())


def model_class_for(config: Any) -> str:
    """The transformers class a checkpoint was saved from, else the bare model of its type."""
    import transformers
    from transformers.models.auto import modeling_auto

    for name in getattr(config, "architectures", None) or []:
        if hasattr(transformers, name):
            return name
    bare = modeling_auto.MODEL_MAPPING_NAMES.get(config.model_type)
    if bare is None or not hasattr(transformers, bare):
        raise LookupError(f"transformers has no model class for model type {config.model_type!r}")
    return bare


def _is_decoder(config: Any) -> bool:
    if getattr(config, "is_decoder", False):
        return True
    architectures = getattr(config, "architectures", None) or []
    if any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in architectures):
        return True
    # Types with a causal LM but no masked LM are decoders (GPT-2, Llama); BERT has both.
    from transformers.models.auto import modeling_auto

    model_type = getattr(config, "model_type", None)
    return (
        model_type in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and model_type not in modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES
    )
