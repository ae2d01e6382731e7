import logging
import subprocess
import sys
import textwrap

import pytest
import torch

from engine.errors import ModelLoadError, UnknownModelError, UnsupportedConfigError
from engine.models.builtin import BUILTIN_MODELS, FAMILIES, builtin_config
from engine.models.hf import architecture_and_modality, count_parameters
from engine.models.registry import ModelRegistry
from engine.models.spec import TIERS

TINY = [model.name for model in BUILTIN_MODELS if model.tier != "low"]
REAL_SHAPES = [model.name for model in BUILTIN_MODELS if model.tier == "low"]


def first_output(outputs) -> torch.Tensor:
    return outputs[0] if not isinstance(outputs, torch.Tensor) else outputs


@pytest.mark.parametrize("name", TINY)
def test_every_tiny_builtin_builds_and_runs_a_forward_pass_at_batch_2(name):
    spec = ModelRegistry().get(name)
    model = spec.build()
    assert not model.training
    with torch.inference_mode():
        out = first_output(model(**spec.make_inputs(2, 16, None)))
    assert out.shape[0] == 2
    assert torch.isfinite(out).all()
    assert spec.parameters_million < 1.0
    assert (spec.source, spec.weights) == ("builtin", "random")


@pytest.mark.parametrize("model", BUILTIN_MODELS, ids=lambda model: model.name)
def test_stated_parameter_counts_and_kinds_match_a_meta_device_build(model):
    family = FAMILIES[model.family]
    config = builtin_config(model.name)
    assert count_parameters(family.model_class, config) == model.parameters
    assert architecture_and_modality(config) == (family.architecture, family.modality)


def test_real_shapes_have_the_parameter_counts_of_the_checkpoints_they_copy():
    millions = {spec.name: round(spec.parameters_million) for spec in ModelRegistry().list()}
    published = {"bert-base-uncased": 109, "gpt2": 124, "t5-small": 61, "vit-base-patch16-224": 87}
    assert {name: millions[name] for name in published} == published


def test_inputs_have_each_architectures_shapes():
    registry = ModelRegistry()

    def shapes(name, batch_size=3, sequence_length=20, image_size=224):
        inputs = registry.get(name).make_inputs(batch_size, sequence_length, image_size)
        return {key: tuple(value.shape) for key, value in inputs.items() if isinstance(value, torch.Tensor)}

    assert shapes("bert-tiny") == {"input_ids": (3, 20), "attention_mask": (3, 20)}
    assert shapes("t5-tiny") == {
        "input_ids": (3, 20),
        "attention_mask": (3, 20),
        "decoder_input_ids": (3, 20),
    }
    # Whisper's encoder takes exactly 2 x max_source_positions log-mel frames.
    assert shapes("whisper-tiny-random") == {"input_features": (3, 80, 128), "decoder_input_ids": (3, 20)}
    assert shapes("whisper-base")["input_features"] == (3, 80, 3000)
    # ViT runs at the image size asked for, interpolating its position embeddings; None is its own size.
    assert shapes("vit-tiny", image_size=None) == {"pixel_values": (3, 3, 32, 32)}
    assert shapes("vit-tiny", image_size=32) == {"pixel_values": (3, 3, 32, 32)}
    assert shapes("vit-base-patch16-224", batch_size=1, image_size=64) == {"pixel_values": (1, 3, 64, 64)}
    assert registry.get("vit-base-patch16-224").make_inputs(1, 20, 64)["interpolate_pos_encoding"] is True
    assert (registry.get("vit-tiny").image_size, registry.get("bert-tiny").image_size) == (32, None)


def test_tokens_per_item_is_the_sequence_length_and_none_for_vision():
    registry = ModelRegistry()
    assert registry.get("gpt2-tiny").tokens_per_item(128) == 128
    assert registry.get("whisper-tiny-random").tokens_per_item(64) == 64
    assert registry.get("vit-tiny").tokens_per_item is None


def test_builds_and_inputs_are_deterministic():
    spec = ModelRegistry().get("bert-tiny")
    first, second = spec.build().state_dict(), spec.build().state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert torch.equal(spec.make_inputs(2, 8, 224)["input_ids"], spec.make_inputs(2, 8, 224)["input_ids"])


@pytest.mark.parametrize(("name", "limit"), [("bert-tiny", 512), ("roberta-base", 512), ("gpt2", 1024)])
def test_a_sequence_longer_than_the_position_embeddings_is_refused_with_the_limit(name, limit):
    spec = ModelRegistry().get(name)
    assert spec.make_inputs(1, limit, 224)["input_ids"].shape == (1, limit)
    refusal = f"sequence_length {limit + 1} is longer than {name} accepts \\({limit} tokens\\)"
    with pytest.raises(UnsupportedConfigError, match=refusal):
        spec.make_inputs(1, limit + 1, 224)


def test_family_names_mean_their_base_size():
    registry = ModelRegistry()
    assert registry.get("bert").name == "bert-base-uncased"
    assert registry.get("vit").name == "vit-base-patch16-224"
    assert registry.resolve(["bert", "gpt2", "bert-base-uncased", "gpt2-tiny"]) == [
        "bert-base-uncased",
        "gpt2",
        "gpt2-tiny",
    ]


def test_unknown_model_is_refused_with_the_sorted_list_of_available_names():
    registry = ModelRegistry()
    refusal = "unknown model 'bert-huge'; available: albert-base-v2, "
    with pytest.raises(UnknownModelError, match=refusal) as err:
        registry.get("bert-huge")
    assert err.value.available == sorted(registry.names())
    assert "bert-tiny" in err.value.available


def test_an_empty_name_is_an_unknown_model_not_the_current_folder():
    with pytest.raises(UnknownModelError, match="unknown model ''"):
        ModelRegistry().get("")


def test_resolve_stops_at_the_first_unknown_name():
    with pytest.raises(UnknownModelError) as err:
        ModelRegistry().resolve(["bert-tiny", "nope-one", "nope-two"])
    assert err.value.name == "nope-one"


def test_hub_id_offline_fails_with_a_clear_message():
    with pytest.raises(ModelLoadError) as err:
        ModelRegistry().get("benchboard-tests/no-such-model")
    assert str(err.value) == (
        "cannot load Hub model 'benchboard-tests/no-such-model': no network and not in the local cache; "
        "download it first or pass a local checkpoint folder"
    )


def test_tiers_are_cumulative_from_the_two_smallest_models_to_every_builtin():
    registry = ModelRegistry()
    tiers = [registry.tier(priority) for priority in TIERS]
    assert tiers[0] == ["bert-tiny", "gpt2-tiny"]
    for smaller, larger in zip(tiers, tiers[1:]):
        assert set(smaller) < set(larger)
    assert {"distilbert-tiny", "t5-tiny", "vit-tiny"} <= set(registry.tier("high"))
    assert {"roberta-tiny", "bart-tiny", "whisper-tiny-random"} <= set(registry.tier("medium"))
    assert set(REAL_SHAPES) <= set(registry.tier("low"))
    assert registry.tier("all") == [model.name for model in BUILTIN_MODELS]
    assert all(name in registry.names() for tier in tiers for name in tier)
    refusal = "unknown priority 'urgent'; choose one of critical, high, medium, low, all"
    with pytest.raises(ValueError, match=refusal):
        registry.tier("urgent")


def test_listing_every_model_builds_nothing_and_takes_well_under_a_second_in_a_fresh_process():
    # A fresh interpreter, so no earlier test has built or cached anything. What makes a listing
    # slow is loading the models' code: the modeling modules a build imports must not be loaded.
    script = textwrap.dedent(
        """
        import sys, time
        from engine.models.registry import ModelRegistry
        start = time.perf_counter()
        specs = ModelRegistry().list()
        seconds = time.perf_counter() - start
        loaded = [name for name in sys.modules  # a model's own code, not the auto-class tables
                  if name.startswith("transformers.models.") and ".modeling_" in name and ".auto." not in name]
        print(len(specs), seconds, ",".join(sorted(loaded)) or "-")
        """
    )
    count, seconds, loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    assert int(count) == len(BUILTIN_MODELS)
    assert loaded == "-"
    # Well under a second on an idle machine; the bound is generous for a loaded 2-core one.
    assert float(seconds) < 5.0


# --- checkpoints on disk -------------------------------------------------------------


def save_checkpoint(name, folder):
    model = ModelRegistry().get(name).build()
    model.save_pretrained(folder)
    return model


def test_a_checkpoint_folder_path_loads_its_weights_from_disk(tmp_path):
    saved = save_checkpoint("bert-tiny", tmp_path / "my-bert")
    spec = ModelRegistry().get(str(tmp_path / "my-bert"))
    assert (spec.name, spec.source, spec.weights) == (str(tmp_path / "my-bert"), "local", "pretrained")
    assert (spec.family, spec.architecture) == ("bert", "encoder")
    assert spec.parameters_million == pytest.approx(0.202688)
    loaded = spec.build()
    assert torch.equal(loaded.embeddings.word_embeddings.weight, saved.embeddings.word_embeddings.weight)
    with torch.inference_mode():
        assert first_output(loaded(**spec.make_inputs(2, 8, 224))).shape == (2, 8, 64)


def test_checkpoints_under_the_models_dir_are_listed_by_folder_name(tmp_path):
    save_checkpoint("bert-tiny", tmp_path / "my-bert")
    save_checkpoint("gpt2-tiny", tmp_path / "acme" / "gpt-small")
    (tmp_path / "notes").mkdir()
    registry = ModelRegistry(models_dir=tmp_path)
    assert {"my-bert", "acme/gpt-small"} <= set(registry.names())
    assert "notes" not in registry.names()
    gpt = registry.get("acme/gpt-small")
    assert (gpt.source, gpt.architecture, gpt.family) == ("local", "decoder", "gpt2")
    assert {spec.name for spec in registry.list() if spec.source == "local"} == {"my-bert", "acme/gpt-small"}


def test_a_checkpoint_under_the_models_dir_has_one_name_however_it_is_named(tmp_path):
    save_checkpoint("bert-tiny", tmp_path / "models" / "my-bert")
    registry = ModelRegistry(models_dir=tmp_path / "models")
    by_path = registry.get(str(tmp_path / "models" / "my-bert"))
    assert by_path.name == registry.get("my-bert").name == "my-bert"
    assert registry.resolve([str(tmp_path / "models" / "my-bert"), "my-bert"]) == ["my-bert"]
    save_checkpoint("bert-tiny", tmp_path / "elsewhere")  # outside models_dir: named by its path
    assert registry.get(str(tmp_path / "elsewhere")).name == str(tmp_path / "elsewhere")


def test_a_folder_without_weights_is_refused_clearly(tmp_path):
    ModelRegistry().get("bert-tiny").build().config.save_pretrained(tmp_path)
    refusal = "not a Hugging Face checkpoint folder: it needs config.json and weights"
    with pytest.raises(ModelLoadError, match=refusal):
        ModelRegistry().get(str(tmp_path))


# --- plugins ---------------------------------------------------------------------------

PLUGIN_MODULE = '''
import torch

from engine.models.spec import ModelSpec


def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()


def make_inputs(batch_size, sequence_length, image_size):
    return {"input": torch.randn(batch_size, 16)}


def spec(name):
    return ModelSpec(name=name, family="mlp", architecture="custom", modality="tensor",
                     parameters_million=0.000676, build=build, make_inputs=make_inputs)
'''


def test_an_installed_entry_point_registers_its_models(tmp_path, monkeypatch):
    plugin = PLUGIN_MODULE + "\n\ndef models():\n    return [spec('plugin-mlp')]\n"
    (tmp_path / "benchboard_test_plugin.py").write_text(plugin)
    dist_info = tmp_path / "benchboard_test_plugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: benchboard-test-plugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[benchboard.models]\nmlp = benchboard_test_plugin:models\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "benchboard_test_plugin", raising=False)

    registry = ModelRegistry()
    assert "plugin-mlp" in registry.names()
    spec = registry.get("plugin-mlp")
    assert spec.source == "entry_point"
    with torch.inference_mode():
        assert spec.build()(**spec.make_inputs(2, 0, 0)).shape == (2, 4)


def test_custom_benchmark_files_register_models_and_a_broken_one_is_skipped(tmp_path, caplog):
    (tmp_path / "listed.py").write_text(PLUGIN_MODULE + "\n\nMODELS = [spec('listed-mlp')]\n")
    registered = PLUGIN_MODULE + "\n\ndef register():\n    return spec('registered-mlp')\n"
    (tmp_path / "registered.py").write_text(registered)
    (tmp_path / "broken.py").write_text("raise RuntimeError('half-written benchmark')\n")

    with caplog.at_level(logging.WARNING, logger="engine.models.registry"):
        registry = ModelRegistry(custom_benchmarks_dir=tmp_path)
        names = registry.names()
    assert {"listed-mlp", "registered-mlp"} <= set(names)
    assert "half-written benchmark" in caplog.text
    assert {registry.get(name).source for name in ("listed-mlp", "registered-mlp")} == {"custom"}
    listed = registry.get("listed-mlp")
    with torch.inference_mode():
        assert listed.build()(**listed.make_inputs(3, 0, 0)).shape == (3, 4)
