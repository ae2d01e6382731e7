"""Pretrained checkpoints: Hugging Face folders on disk, and Hub ids from the local cache or the network.

Finding checkpoint folders reads the file system only; torch and transformers are imported
once a checkpoint's config is read or its weights loaded (a server with no checkpoints
imports neither, issue 16).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING

from huggingface_hub import constants as hub_constants

from engine.errors import ModelLoadError
from engine.models.hf import (
    ConfigInputs,
    architecture_and_modality,
    attention_refusal,
    count_parameters,
    model_class_for,
    native_image_size,
    scenarios_for,
    tokens_per_item_for,
)
from engine.models.spec import ModelSpec

if TYPE_CHECKING:
    import torch

CONFIG_FILE = "config.json"
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# A models folder holds checkpoints as <name>/ or, like the Hub, <org>/<name>/.
DISCOVERY_DEPTH = 2


def is_checkpoint_folder(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() and any((path / weights).is_file() for weights in WEIGHT_FILES)


def discover_checkpoints(models_dir: Path) -> dict[str, Path]:
    """Checkpoint folders under ``models_dir``, by their path relative to it ("my-bert", "org/model")."""
    found: dict[str, Path] = {}
    if not models_dir.is_dir():
        return found
    level = [models_dir]
    for _depth in range(DISCOVERY_DEPTH):
        subfolders = sorted(child for folder in level for child in folder.iterdir() if child.is_dir())
        for folder in subfolders:
            if is_checkpoint_folder(folder):
                found[folder.relative_to(models_dir).as_posix()] = folder
        level = [folder for folder in subfolders if not is_checkpoint_folder(folder)]
    return found


def local_checkpoint_spec(name: str, folder: Path) -> ModelSpec:
    """A checkpoint folder on disk; ``name`` is what the registry lists it as."""
    if not folder.is_dir():
        raise ModelLoadError(f"no checkpoint folder at {str(folder)!r}")
    if not is_checkpoint_folder(folder):
        raise ModelLoadError(
            f"{str(folder)!r} is not a Hugging Face checkpoint folder: it needs {CONFIG_FILE} and weights "
            "(model.safetensors or pytorch_model.bin)"
        )
    location = str(folder.resolve())
    try:
        config = load_config(location, local_files_only=True)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot read the checkpoint config in {location!r}: {err}") from err
    return _spec(name, location, config, source="local", local_files_only=True)


def hub_spec(model_id: str) -> ModelSpec:
    """A Hub model: from the local cache, else from the network where that is allowed."""
    local_files_only = True
    try:
        config = load_config(model_id, local_files_only=True)
    except (OSError, ValueError) as cached_err:
        if hub_offline():
            raise ModelLoadError(
                f"cannot load Hub model {model_id!r}: no network and not in the local cache; "
                "download it first or pass a local checkpoint folder"
            ) from cached_err
        local_files_only = False
        try:
            config = load_config(model_id, local_files_only=False)
        except (OSError, ValueError) as err:
            raise ModelLoadError(
                f"cannot load Hub model {model_id!r}: {err}; "
                "download it first or pass a local checkpoint folder"
            ) from err
    return _spec(model_id, model_id, config, source="hub", local_files_only=local_files_only)


def hub_offline() -> bool:
    """The Hub's offline switches, read now: huggingface_hub reads its own only at import."""
    switches = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    switched_on = any(value.upper() in ("1", "ON", "YES", "TRUE") for value in switches)
    return hub_constants.HF_HUB_OFFLINE or switched_on


@cache
def load_config(location: str, local_files_only: bool):
    import transformers

    return transformers.AutoConfig.from_pretrained(location, local_files_only=local_files_only)


@dataclass(frozen=True)
class LoadPretrained:
    """``build`` for a checkpoint: its weights, in fp32, in eval mode, with the attention
    implementation asked for (transformers refuses one the model lacks: UnsupportedConfigError)."""

    model_class: str
    location: str
    local_files_only: bool

    def __call__(self, attn_implementation: str | None = None) -> torch.nn.Module:
        import torch
        import transformers

        loader = getattr(transformers, self.model_class)
        extra = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
        try:
            # use_cache=False as for the built-ins: one forward pass is measured, no KV cache.
            model = loader.from_pretrained(
                self.location, dtype=torch.float32, local_files_only=self.local_files_only, use_cache=False, **extra
            )
        except ImportError as err:
            if attn_implementation is None:
                raise
            raise attention_refusal(self.model_class, attn_implementation, err) from err
        except (OSError, ValueError) as err:
            if attn_implementation is not None and "attention" in str(err).lower():
                raise attention_refusal(self.model_class, attn_implementation, err) from err
            raise ModelLoadError(f"cannot load the weights of {self.location!r}: {err}") from err
        return model.eval()


def _spec(name: str, location: str, config, *, source: str, local_files_only: bool) -> ModelSpec:
    try:
        model_class = model_class_for(config)
    except LookupError as err:
        raise ModelLoadError(f"cannot load {name!r}: {err}") from err
    architecture, modality = architecture_and_modality(config)
    return ModelSpec(
        name=name,
        family=config.model_type,
        architecture=architecture,
        modality=modality,
        parameters_million=count_parameters(model_class, config) / 1e6,
        build=LoadPretrained(model_class, location, local_files_only),
        make_inputs=ConfigInputs(name, partial(load_config, location, local_files_only), model_class),
        source=source,
        weights="pretrained",
        tokens_per_item=tokens_per_item_for(architecture),
        image_size=native_image_size(config) if architecture == "vision" else None,
        chooses_attention=True,
        scenarios=scenarios_for(architecture, model_class),
    )
