"""The registry lists and plans the built-ins without importing torch or transformers (issue 16),
and says when listing will import them: checkpoints, custom benchmark files, entry points."""

from __future__ import annotations

import json
import subprocess
import sys

from engine.models.registry import ModelRegistry


def test_listing_and_resolving_the_builtins_in_a_fresh_process_imports_neither_torch_nor_transformers():
    script = (
        "import json, sys\n"
        "from engine.models.registry import ModelRegistry\n"
        "registry = ModelRegistry()\n"
        "listed = [spec.describe().name for spec in registry.list()]\n"
        "resolved = registry.resolve(['bert', 'gpt2-tiny']) + registry.tier('critical')\n"
        "scenarios = registry.get('gpt2-tiny').scenarios\n"
        "print(json.dumps([len(listed), resolved, scenarios, [m for m in ('torch', 'transformers') if m in sys.modules]]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    count, resolved, scenarios, imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert count == len(ModelRegistry().list())
    assert resolved == ["bert-base-uncased", "gpt2-tiny", "bert-tiny", "gpt2-tiny"]
    assert scenarios == ["forward", "generate"]
    assert imported == []


def test_listing_imports_them_only_for_checkpoints_custom_files_or_entry_points(tmp_path, monkeypatch):
    models, custom = tmp_path / "models", tmp_path / "custom"
    models.mkdir()
    custom.mkdir()
    (custom / "_helpers.py").write_text("")  # skipped by the registry, as files starting with _ are
    assert not ModelRegistry(models, custom).lists_more_than_builtins()

    checkpoint = models / "org" / "my-bert"
    checkpoint.mkdir(parents=True)
    (checkpoint / "config.json").write_text("{}")
    (checkpoint / "model.safetensors").write_bytes(b"")
    assert ModelRegistry(models).lists_more_than_builtins()

    (custom / "mine.py").write_text("MODELS = []\n")
    assert ModelRegistry(custom_benchmarks_dir=custom).lists_more_than_builtins()

    dist_info = tmp_path / "plugin" / "benchboard_test_plugin-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: benchboard-test-plugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[benchboard.models]\nmlp = benchboard_test_plugin:models\n")
    assert not ModelRegistry().lists_more_than_builtins()
    monkeypatch.syspath_prepend(str(tmp_path / "plugin"))
    assert ModelRegistry().lists_more_than_builtins()
