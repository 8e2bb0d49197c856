"""Bad input of every kind ends in one clear error naming the problem and the fix,
before any work starts, and never in a traceback from deep inside a library."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tinyreason.config.base import ConfigError
from tinyreason.config.loading import check_storage, load_config

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load((ROOT / "configs" / "micro.yaml").read_text())
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        node[last] = value
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _model_dir(tmp_path: Path, weights: str | None) -> str:
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    if weights:
        (d / weights).write_bytes(b"\0")
    return str(d)


CASES = [
    ("malformed yaml", lambda t: _raw(t, "stages: [\n  - name: x\n"), ["not valid YAML"]),
    ("not utf-8 yaml", lambda t: _raw(t, b"name: caf\xe9\n"), ["not UTF-8"]),
    ("unknown key", lambda t: _config(t, **{"stages.0.colour": "red"}), ["stages.0.colour", "Extra inputs"]),
    ("wrong type", lambda t: _config(t, **{"stages.0.trainer.num_train_epochs": "many"}),
     ["stages.0.trainer.num_train_epochs", "'many'", "valid number"]),
    ("missing data file", lambda t: _config(t, **{"stages.1.data.blend.sources": [{"files": "/no/such/*.jsonl"}]}),
     ["stages.1.data.blend.sources.0.files", "no file matches", "/no/such/*.jsonl"]),
    ("wrong file type", lambda t: _config(t, **{"stages.1.data.blend.sources": [{"files": str(_touch(t, "x.txt"))}]}),
     ["unsupported file type", ".jsonl"]),
    ("model dir without weights", lambda t: _config(t, **{"model.name_or_path": _model_dir(t, None)}),
     ["model.name_or_path", "no *.safetensors weights"]),
    ("model dir with pickle weights only", lambda t: _config(t, **{"model.name_or_path": _model_dir(t, "pytorch_model.bin")}),
     ["only pickle .bin weights"]),
    ("missing model dir", lambda t: _config(t, **{"model.name_or_path": "./no-such-model"}), ["no such directory"]),
    ("model dir without a tokenizer", lambda t: _config(t, **{"model.name_or_path": _model_dir(t, "model.safetensors")}),
     ["model.name_or_path", "has no tokenizer", "tokenizer.save_pretrained", "set tokenizer.path"]),
    ("tokenizer dir without a tokenizer", lambda t: _config(t, **{"tokenizer.path": str(_touch(t, "x.txt").parent)}),
     ["tokenizer.path", "has no tokenizer"]),
    ("missing blend file", lambda t: _config(t, **{"stages.0.data.blend": "blends/nope.yaml"}), ["nope.yaml", "not found"]),
    ("unknown task family", lambda t: _config(t, **{"stages.1.data.blend.sources": [
        {"synthetic": "chat", "tasks": ["count", "algebra"]}]}),
     ["stages.1.data.blend.sources.0.tasks", "unknown: algebra", "add_sub, compare, count, list_op"]),
    ("task families on a source that has none", lambda t: _config(t, **{"stages.0.data.blend.sources": [
        {"synthetic": "pretrain", "tasks": ["count"]}]}),
     ["stages.0.data.blend.sources.0", "synthetic:pretrain", "chat, reasoning, preference, prompts", "remove tasks"]),
    ("dpo given chat rows", lambda t: _config(t, **{"stages.3.data.blend.sources": [{"synthetic": "chat"}]}),
     ["stages.3.data.blend.sources.0.synthetic", "preference"]),
    ("token budget on a dpo stage", lambda t: _config(t, **{"stages.3.data.tokens_per_step": 4096}),
     ["stages.3", "data.tokens_per_step applies to stages that pack rows"]),
    ("two batch sizes", lambda t: _config(t, **{"stages.1.data.tokens_per_step": 4096,
                                                 "stages.1.trainer.per_device_train_batch_size": 8}),
     ["stages.1", "data.tokens_per_step=4096 and trainer.per_device_train_batch_size=8", "keep one"]),
    ("token budget under one row per micro-batch", lambda t: _config(t, **{"stages.1.data.tokens_per_step": 200}),
     ["data.tokens_per_step=200", "2 micro-batches", "max_length=128", "at least 256"]),
    ("a batch of examples without packing", lambda t: _config(t, **{"stages.1.data.packed_batch": "examples",
                                                                    "stages.1.data.packing": False}),
     ["data.packed_batch=examples", "data.packing: true", "packing false"]),
    ("a batch of examples and a token budget", lambda t: _config(t, **{"stages.1.data.packed_batch": "examples"}),
     ["data.packed_batch=examples and data.tokens_per_step=2048 both set the batch size", "keep one"]),
    ("padding-free on a dpo stage", lambda t: _config(t, **{"stages.3.data.padding_free": True}),
     ["stages.3", "data.padding_free applies to stages that pack rows", "remove it"]),
    ("a revision on a local-files source", lambda t: _config(t, **{"stages.1.data.blend.sources": [
        {"files": str(ROOT / "tests/fixtures/sources/smoltalk2_sft.jsonl"), "revision": "v1.0"}]}),
     ["stages.1.data.blend.sources.0", "revision='v1.0' pins a hub dataset", "local files", "remove revision"]),
    ("a revision on a synthetic source", lambda t: _config(t, **{"stages.1.data.blend.sources": [
        {"synthetic": "chat", "revision": "main"}]}), ["stages.1.data.blend.sources.0", "synthetic generator"]),
    ("a revision on a hub source that is a local dir", lambda t: _config(t, **{"stages.1.data.blend.sources": [
        {"hub": str(ROOT / "tests/fixtures/sources/smoltalk2"), "subset": "SFT", "revision": "abc123"}]}),
     ["stages.1.data.blend.sources.0.revision = 'abc123'", "is a local directory", "remove revision"]),
    ("a revision on a from-scratch model", lambda t: _config(t, **{"model.revision": "abc123"}),
     ["model", "preset 'micro' is built from scratch", "remove revision"]),
    ("a revision on a local model dir", lambda t: _config(t, **{"model.name_or_path": _model_dir(t, "model.safetensors"),
                                                               "model.revision": "abc123"}),
     ["model.revision = 'abc123'", "is a local path", "remove revision"]),
    ("a checkpoint every 0 minutes", lambda t: _config(t, **{"stages.0.checkpoints.every_minutes": 0}),
     ["stages.0.checkpoints.every_minutes = 0", "positive number of minutes", "remove it to checkpoint only every "
      "trainer.save_steps"]),
    ("a price for a node type the cluster does not have", lambda t: _config(t, **{"cost.prices": {"gpu_v100": 3.06}}),
     ["cost.prices", "'gpu_v100', which cluster.yaml does not have", "its node types are: head, gpu_a10g, gpu_a100, "
      "gpu_h100"]),
    ("a price for a node without a GPU or CPU count", lambda t: _config(t, **{"cost.prices": {"head": 0.38}}),
     ["cost.prices", "'head'", "declares neither GPUs nor CPUs", "resources: {CPU: <its vCPUs>}"]),
    ("a price table for a missing cluster file", lambda t: _config(t, **{"cost.prices": {"gpu_a10g": 5.67},
                                                                           "cost.cluster": "no-such.yaml"}),
     ["cost.cluster = 'no-such.yaml'", "no such file"]),
    ("a default node type without a price", lambda t: _config(t, **{"cost.prices": {"gpu_a10g": 5.67},
                                                                      "cost.node_type": "gpu_a100"}),
     ["cost.node_type='gpu_a100' has no price", "gpu_a10g"]),
    ("a default node type the cluster does not have", lambda t: _config(t, **{"cost.node_type": "gpu_t4"}),
     ["cost.node_type = 'gpu_t4'", "cluster.yaml has no such node type", "gpu_a10g"]),
    ("more minimum workers than workers", lambda t: _config(t, **{"stages.0.scaling.min_workers": 3}),
     ["stages.0.scaling", "min_workers=3 is more than num_workers=2"]),
    ("an elastic range whose worker counts cannot share a step",
     lambda t: _config(t, **{"stages.0.scaling.num_workers": 4, "stages.0.scaling.min_workers": 2}),
     ["scaling.min_workers=2", "4 x 1 = 4 micro-batches, which 3 workers cannot share evenly",
      "raise min_workers to 4, or gradient_accumulation_steps to 3"]),
    ("an elastic ZeRO-3 stage", lambda t: _config(t, **{"stages.0.scaling.min_workers": 1,
                                                         "stages.0.deepspeed.zero_stage": 3}),
     ["scaling.min_workers needs deepspeed.zero_stage 0, 1 or 2"]),
]


def _raw(tmp_path: Path, text) -> Path:
    path = tmp_path / "raw.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _touch(tmp_path: Path, name: str) -> Path:
    p = tmp_path / name
    p.write_text("x")
    return p


@pytest.mark.parametrize("name, make, fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_named_with_its_fix(tmp_path, name, make, fragments):
    with pytest.raises(ConfigError) as err:
        load_config(make(tmp_path))
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_storage_is_named(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(ConfigError, match="storage.path .* is not writable"):
        check_storage(str(ro / "runs"))


def test_storage_under_a_file_is_not_writable(tmp_path):
    blocker = _touch(tmp_path, "a-file")
    with pytest.raises(ConfigError, match="is not writable.*--set storage.path"):
        check_storage(str(blocker / "runs"))


def test_the_entry_point_prints_one_line_and_exits_nonzero(tmp_path):
    bad = _config(tmp_path, **{"stages.0.trainer.learning_rate": -1})
    out = subprocess.run([sys.executable, "jobs/curriculum.py", "--config", str(bad)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "stages.0.trainer.learning_rate" in out.stderr and "greater than 0" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert not (tmp_path / "runs").exists()  # nothing started
