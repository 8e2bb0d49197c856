"""What trained a stage enters its cache key: library versions and its kind's platform code,
fingerprinted once per run; changes are phrased for the report; stale stages are found by
their content key; one seed resolves every stage's trainer seed."""

import json
import shutil
from pathlib import Path

import pytest

from tinyreason import lineage
from tinyreason.config.loading import load_config
from tinyreason.curriculum import why_trained
from tinyreason.lineage import TrainedBy, changes, find_stale, kind_modules, summarize
from tinyreason.outputs import MANIFEST, ModelRef
from tinyreason.stage import StageOutcome, seeded, stage_key
from tinyreason.storage import Storage

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "platform" / "tinyreason"


@pytest.fixture(scope="module")
def trained_by():
    return TrainedBy()


def test_a_kind_is_fingerprinted_by_the_modules_it_runs_and_nothing_else(trained_by):
    assert kind_modules("pretrain") == ["tinyreason.train.pretrain", "tinyreason.train.sft"]  # sft's loop
    sft, dpo, pretrain = trained_by.code("sft"), trained_by.code("dpo"), trained_by.code("pretrain")
    assert {"train/sft.py", "data/tokenize.py", "train/worker.py", "train/args.py"} <= set(sft)
    assert "train/sft.py" not in dpo and "train/dpo.py" in dpo  # an edit to dpo.py never retrains sft
    assert {"train/pretrain.py", "train/sft.py"} <= set(pretrain)
    # the recording code stays out: describing a machine better must not retrain anything
    assert not {"provenance.py", "machine.py", "run_provenance.py", "report.py", "stage.py", "curriculum.py"} & set(sft)
    assert trained_by.of("sft") == {"versions": trained_by.versions, "code": sft}
    assert {"torch", "transformers", "trl", "deepspeed", "tokenizers"} <= set(trained_by.versions)


def test_the_import_graph_is_read_once_per_run(monkeypatch):
    reads = []
    real = lineage.import_graph
    monkeypatch.setattr(lineage, "import_graph", lambda *a, **k: reads.append(1) or real(*a, **k))
    t = TrainedBy()
    for kind in ("sft", "dpo", "sft", "grpo", "sft"):
        t.code(kind)
    assert len(reads) == 1


def test_an_edited_module_or_an_upgraded_library_is_named(tmp_path, trained_by):
    copy = tmp_path / "tinyreason"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "train" / "reasoning_sft.py").write_text((copy / "train" / "reasoning_sft.py").read_text() + "# fix\n")
    edited = TrainedBy(package_dir=copy, versions={**trained_by.versions, "trl": "1.17.0"})
    assert edited.code("sft") == trained_by.code("sft")  # sft does not run reasoning_sft.py
    what = changes(trained_by.of("reasoning_sft"), edited.of("reasoning_sft"))
    assert what == [f"trl {trained_by.versions['trl']} -> 1.17.0", "train/reasoning_sft.py changed"]
    assert changes(trained_by.of("sft"), edited.of("sft")) == [f"trl {trained_by.versions['trl']} -> 1.17.0"]


def test_changes_in_words():
    old = {"versions": {"torch": "2.13.0", "trl": "1.16.0", "peft": "0.14.0"}, "code": {"train/sft.py": "a"}}
    new = {"versions": {"torch": "2.13.0", "trl": "1.17.0", "flash-attn": "2.7.4"},
           "code": {"train/sft.py": "b", "data/new.py": "c"}}
    assert changes(old, new) == ["flash-attn 2.7.4 added", "peft 0.14.0 removed", "trl 1.16.0 -> 1.17.0",
                                 "data/new.py added", "train/sft.py changed"]
    assert changes(new, new) == []
    assert "did not record" in changes(None, new)[0]
    assert summarize([str(i) for i in range(6)]) == "0, 1, 2, 3 and 2 more"


def test_a_kind_from_outside_the_package_is_hashed_by_its_file():
    from tinyreason.train import registry
    from tinyreason.train.kind import StageKind

    sft = registry.get("sft")
    kind = StageKind(name="outside", summary="x", schema="chat", trl_config=sft.trl_config,
                     train_loop=test_changes_in_words, tokenize_steps=sft.tokenize_steps,
                     prepare_tokenizer=sft.prepare_tokenizer)
    registry.register(kind)
    try:
        code = TrainedBy().code("outside")
    finally:
        registry.unregister("outside")
    assert code[f"<{__name__}>"] != "unknown" and "train/sft.py" in code


# --------------------------------------------------------------------------- keys and seeds


@pytest.fixture(scope="module")
def micro():
    return load_config(ROOT / "configs" / "micro.yaml")


class FakeBlend:
    manifest = {"key": "blend-key"}


def test_the_key_covers_what_trained_the_stage_and_the_content_key_does_not(micro, trained_by):
    stage, parent = micro.stages[1], ModelRef("pretrain", "/p", "/p", "parent-key")
    content = stage_key(stage, parent, FakeBlend(), 0)
    key = stage_key(stage, parent, FakeBlend(), 0, trained_by.of("sft"))
    upgraded = {**trained_by.of("sft"), "versions": {**trained_by.versions, "trl": "9.9.9"}}
    assert len({content, key, stage_key(stage, parent, FakeBlend(), 0, upgraded)}) == 3
    assert stage_key(stage, parent, FakeBlend(), 1, trained_by.of("sft")) != key  # the seed
    assert key == stage_key(stage, parent, FakeBlend(), 0, TrainedBy().of("sft"))  # stable across runs


def test_one_seed_drives_every_stage_unless_the_stage_pins_its_own(micro):
    stage = micro.stages[1]
    assert stage.trainer.seed is None  # unset: the experiment's
    assert seeded(stage, 7).trainer.seed == 7 and seeded(stage, 7).trainer.to_trl()["seed"] == 7
    assert stage.trainer.seed is None  # the config itself is left as written
    pinned = stage.model_copy(update={"trainer": stage.trainer.model_copy(update={"seed": 3})})
    assert seeded(pinned, 7).trainer.seed == 3


# --------------------------------------------------------------------------- why, and stale stages


def _outcome(config, trained_by, cached=False, stale=None):
    manifest = {"config": config, "blend": {"key": "b"}, "parent": {"key": "p", "name": "sft"},
                "provenance": {"trained_by": trained_by}}
    return StageOutcome(1, None, None, manifest, cached, stale=stale or [])


def test_why_a_stage_trained_names_the_library_and_the_module():
    before = {"versions": {"trl": "1.16.0"}, "code": {"train/sft.py": "a", "data/tokenize.py": "t"}}
    after = {"versions": {"trl": "1.17.0"}, "code": {"train/sft.py": "b", "data/tokenize.py": "t"}}
    previous = {"config": {"x": 1}, "blend": "b", "parent": "p", "trained_by": before}
    text = why_trained(previous, _outcome({"x": 1}, after))
    assert text == "what trains it changed (trl 1.16.0 -> 1.17.0, train/sft.py changed)", text
    old_record = {"config": {"x": 1}, "blend": "b", "parent": "p"}  # written before provenance existed
    assert "output was missing" in why_trained(old_record, _outcome({"x": 1}, after))
    stale = why_trained(previous, _outcome({"x": 1}, before, cached=True, stale=["trl 1.16.0 -> 1.17.0"]))
    assert stale == "stale, reused (reuse_stale): since it trained, trl 1.16.0 -> 1.17.0"


def _stage_dir(root: Path, name: str, manifest: dict | None) -> None:
    d = root / "stages" / name
    d.mkdir(parents=True)
    if manifest is not None:
        (d / MANIFEST).write_text(json.dumps(manifest))


def test_stale_stages_are_found_by_their_content_key(tmp_path):
    store = Storage(str(tmp_path))
    assert find_stale(store, 1, "sft", "c0ffee") is None  # no stages/ yet
    _stage_dir(tmp_path, "01-sft-aaa", {"provenance": {"content_key": "c0ffee"}, "completed_at": "2026-01-01"})
    _stage_dir(tmp_path, "01-sft-bbb", {"provenance": {"content_key": "c0ffee"}, "completed_at": "2026-02-01"})
    _stage_dir(tmp_path, "01-sft-ccc", None)  # incomplete: never reused
    _stage_dir(tmp_path, "01-sft-ddd", {"provenance": {"content_key": "other"}, "completed_at": "2026-03-01"})
    _stage_dir(tmp_path, "02-sft-eee", {"provenance": {"content_key": "c0ffee"}, "completed_at": "2026-04-01"})
    assert find_stale(store, 1, "sft", "c0ffee").rel == "stages/01-sft-bbb"  # the newest match
    # a stage trained before code entered the key is named by its content key
    _stage_dir(tmp_path, "03-dpo-0123456789ab", {"completed_at": "2025-01-01"})
    assert find_stale(store, 3, "dpo", "0123456789ab").rel == "stages/03-dpo-0123456789ab"
    assert find_stale(store, 3, "dpo", "ffffffffffff") is None
