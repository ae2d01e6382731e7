"""The registry's unit: how to build a model and make inputs for it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

ARCHITECTURE_TYPES = ("encoder", "decoder", "encoder-decoder", "vision", "audio", "multimodal", "custom")
TIERS = ("critical", "high", "medium", "low")
FORWARD_ONLY: tuple[str, ...] = ("forward",)
GENERATE_SCENARIOS: tuple[str, ...] = ("forward", "generate")


class ModelInfo(msgspec.Struct, kw_only=True):
    """A model as GET /models lists it and the models table stores it."""

    name: str
    family: str
    type: str  # one of ARCHITECTURE_TYPES
    modality: str
    parameters_million: float
    source: str
    weights: str
    tier: str
    scenarios: list[str] = msgspec.field(default_factory=lambda: ["forward"])  # what it can be measured in: forward, and generate where it generates


@dataclass(frozen=True)
class ModelSpec:
    """A registered workload.

    ``build()`` returns a ``torch.nn.Module`` (in eval mode, on CPU, fp32).
    ``make_inputs(batch_size, sequence_length, image_size)`` returns the keyword
    arguments for ``module(**inputs)``, as CPU tensors; the worker moves them.
    ``tokens_per_item(sequence_length)`` is the token count one item carries, or
    None where tokens/s means nothing (vision). ``image_size`` is a vision model's own
    square input size (None for models that take no image). ``chooses_attention`` says
    that ``build(attn_implementation=...)`` builds it with sdpa, eager or flash_attention_2
    (transformers models); a custom workload's attention is its own code's.

    ``scenarios`` lists what it can be measured in: ``"forward"``, and ``"generate"`` for a
    model whose ``build()`` returns a transformers ``GenerationMixin`` model (``.generate``);
    its generation is fed ``make_inputs(...)`` without the ``decoder_*`` entries
    (engine.generation). A custom workload declares it with ``scenarios=GENERATE_SCENARIOS``.
    """

    name: str
    family: str
    architecture: str
    modality: str
    parameters_million: float
    build: Callable[[], Any]
    make_inputs: Callable[[int, int, int], dict]
    source: str = "builtin"  # builtin | local | hub | entry_point | custom
    weights: str = "random"  # random | pretrained
    tier: str = "low"
    tokens_per_item: Callable[[int], int] | None = None
    image_size: int | None = None
    chooses_attention: bool = False
    scenarios: tuple[str, ...] = FORWARD_ONLY

    @property
    def generates(self) -> bool:
        return "generate" in self.scenarios

    def describe(self) -> ModelInfo:
        return ModelInfo(
            name=self.name, family=self.family, type=self.architecture, modality=self.modality,
            parameters_million=round(self.parameters_million, 3), source=self.source, weights=self.weights,
            tier=self.tier, scenarios=list(self.scenarios),
        )
