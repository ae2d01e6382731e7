"""The registry: one place that turns a model name into a ModelSpec.

A name resolves, first match wins, as:

1. a built-in name or alias ("bert" is bert-base-uncased);
2. a path to a Hugging Face checkpoint folder (config.json plus weights);
3. a checkpoint folder under ``models_dir``, by its path relative to it;
4. a model from a ``benchboard.models`` entry point;
5. a model from a ``.py`` file in ``custom_benchmarks_dir``;
6. a Hub id ("org/name"), from the local cache or the network where allowed.

Entry points and custom files are user code: one that fails to load is logged
and skipped, so it cannot take the others down.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import re
import sys
from importlib import metadata
from pathlib import Path

from engine.errors import ModelLoadError, UnknownModelError
from engine.models.builtin import ALIASES, builtin_specs
from engine.models.checkpoints import discover_checkpoints, hub_spec, local_checkpoint_spec
from engine.models.spec import TIERS, ModelSpec

ENTRY_POINT_GROUP = "benchboard.models"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
PATH_PREFIXES = ("/", "./", "../", "~", ".\\", "..\\")

log = logging.getLogger(__name__)


class ModelRegistry:
    def __init__(
        self,
        models_dir: str | Path | None = None,
        custom_benchmarks_dir: str | Path | None = None,
        *,
        allow_paths: bool = True,
    ):
        # A server sets allow_paths=False: its clients must not make it load arbitrary
        # folders of its file system, only checkpoints under its own models_dir.
        self.allow_paths = allow_paths
        self.models_dir = Path(models_dir).expanduser() if models_dir else None
        self.custom_benchmarks_dir = (
            Path(custom_benchmarks_dir).expanduser() if custom_benchmarks_dir else None
        )
        self._checkpoint_specs: dict[str, ModelSpec] = {}
        self._plugin_specs: dict[str, ModelSpec] | None = None

    def get(self, name: str) -> ModelSpec:
        builtins = builtin_specs()
        canonical = ALIASES.get(name, name)
        if canonical in builtins:
            return builtins[canonical]
        if _looks_like_path(name):
            if not self.allow_paths:
                raise ModelLoadError(
                    f"model {name!r} is a path; this server only loads checkpoints from its own models "
                    "directory (--models-dir), by their name there"
                )
            folder = Path(name).expanduser().resolve()
            # A checkpoint under models_dir keeps its name there, however it was named: one
            # checkpoint, one model (its results compare, and list, together).
            return self._checkpoint(self._name_in_models_dir(folder) or str(folder), folder)
        discovered = self._discovered()
        if name in discovered:
            return self._checkpoint(name, discovered[name])
        plugins = self._plugins()
        if name in plugins:
            return plugins[name]
        if HUB_ID.fullmatch(name):
            if name not in self._checkpoint_specs:
                self._checkpoint_specs[name] = hub_spec(name)
            return self._checkpoint_specs[name]
        raise UnknownModelError(name, sorted(self.names()))

    def names(self) -> list[str]:
        """Every listed model's name: built-ins, discovered checkpoints, entry points, custom files."""
        return list(dict.fromkeys([*builtin_specs(), *self._discovered(), *self._plugins()]))

    def list(self) -> list[ModelSpec]:
        specs = dict(builtin_specs())
        for name, folder in self._discovered().items():
            if name in specs:
                continue
            try:
                specs[name] = self._checkpoint(name, folder)
            except ModelLoadError as err:
                log.warning("skipping checkpoint %s: %s", folder, err)
        for name, spec in self._plugins().items():
            specs.setdefault(name, spec)
        return list(specs.values())

    def lists_more_than_builtins(self) -> bool:
        """Whether listing reads checkpoint configs or runs user code, which import transformers
        (and mostly torch): checkpoints under models_dir, .py files in custom_benchmarks_dir,
        entry points. Only the file system and the installed packages' metadata are read."""
        custom_files = bool(_custom_files(self.custom_benchmarks_dir))
        try:
            checkpoints = bool(self._discovered())
        except OSError:  # an unreadable models_dir: listing will say why; assume it has some
            checkpoints = True
        return checkpoints or custom_files or bool(metadata.entry_points(group=ENTRY_POINT_GROUP))

    def resolve(self, names: list[str]) -> list[str]:
        """Canonical names for ``names``, deduplicated in order; raises on the first unknown."""
        return list(dict.fromkeys(self.get(name).name for name in names))

    def tier(self, priority: str) -> list[str]:
        """The built-ins a run of ``priority`` measures when it names no models.

        Tiers are cumulative: critical holds the two smallest models, each lower
        priority adds more, low adds the real base sizes; "all" is every built-in.
        """
        builtins = builtin_specs().values()
        if priority == "all":
            return [spec.name for spec in builtins]
        if priority not in TIERS:
            raise ValueError(f"unknown priority {priority!r}; choose one of {', '.join(TIERS)}, all")
        rank = TIERS.index(priority)
        return [spec.name for spec in builtins if TIERS.index(spec.tier) <= rank]

    def _checkpoint(self, name: str, folder: Path) -> ModelSpec:
        if name not in self._checkpoint_specs:
            self._checkpoint_specs[name] = local_checkpoint_spec(name, folder)
        return self._checkpoint_specs[name]

    def _name_in_models_dir(self, folder: Path) -> str | None:
        if self.models_dir is None or not folder.is_relative_to(self.models_dir.resolve()):
            return None
        named = {path.resolve(): name for name, path in self._discovered().items()}
        return named.get(folder)

    def _discovered(self) -> dict[str, Path]:
        # Not cached: a checkpoint copied into the folder shows up without a restart.
        return discover_checkpoints(self.models_dir) if self.models_dir else {}

    def _plugins(self) -> dict[str, ModelSpec]:
        if self._plugin_specs is None:
            found = [*_entry_point_specs(), *_custom_file_specs(self.custom_benchmarks_dir)]
            self._plugin_specs = {}
            for spec in found:
                if spec.name in self._plugin_specs or spec.name in builtin_specs():
                    log.warning("model %r is registered twice; keeping the first", spec.name)
                    continue
                self._plugin_specs[spec.name] = spec
        return self._plugin_specs


def _looks_like_path(name: str) -> bool:
    # "" would be the current folder; it is no model name.
    return bool(name) and (name.startswith(PATH_PREFIXES) or Path(name).expanduser().is_dir())


def _entry_point_specs() -> list[ModelSpec]:
    specs = []
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            specs += _as_specs(entry_point.load(), source="entry_point")
        except Exception as err:  # noqa: BLE001  user code may fail in any way; skip it, keep the rest
            log.warning("skipping entry point %s = %s: %s", entry_point.name, entry_point.value, err)
    return specs


def _custom_file_specs(folder: Path | None) -> list[ModelSpec]:
    """Models from ``.py`` files that define ``MODELS`` (a list of ModelSpec) or ``register()``."""
    specs = []
    for path in _custom_files(folder):
        try:
            module = _import_file(path)
            registered = getattr(module, "MODELS", None) or getattr(module, "register", None)
            if registered is None:
                raise TypeError("defines neither MODELS nor register()")
            specs += _as_specs(registered, source="custom")
        except Exception as err:  # noqa: BLE001  user code may fail in any way; skip it, keep the rest
            log.warning("skipping custom benchmark file %s: %s", path, err)
    return specs


def _custom_files(folder: Path | None) -> list[Path]:
    """The ``.py`` files of ``folder`` that define models; ``_``-prefixed ones are helpers."""
    if folder is None or not folder.is_dir():
        return []
    return [path for path in sorted(folder.glob("*.py")) if not path.name.startswith("_")]


def _import_file(path: Path):
    module_name = f"benchboard_custom_benchmarks.{path.stem}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    # Dataclasses defined in the file look their module up in sys.modules.
    sys.modules[module_name] = module
    module_spec.loader.exec_module(module)
    return module


def _as_specs(registered, *, source: str) -> list[ModelSpec]:
    """A ModelSpec, a list of them, or a callable returning either; marked with where it came from."""
    if callable(registered) and not isinstance(registered, ModelSpec):
        registered = registered()
    specs = [registered] if isinstance(registered, ModelSpec) else list(registered)
    for spec in specs:
        if not isinstance(spec, ModelSpec):
            raise TypeError(f"expected ModelSpec objects, got {type(spec).__name__}")
    return [dataclasses.replace(spec, source=source) for spec in specs]
