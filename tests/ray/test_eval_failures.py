"""`evaluation.evaluate` on a real local Ray when evaluation cannot work: weights missing
or corrupt, a benchmark task whose data file is missing. Each ends in one EvalError that
names the stage, the part of the evaluation that failed and the model dir, and leaves
the exported model exactly as it was (and no cached result that would hide the failure).
A healthy pretrain stage, by contrast, gets its perplexity and samples."""

import math
import shutil
from pathlib import Path

import pytest

from task_files import task_with_missing_data

from tinyreason.config.loading import validate_config
from tinyreason.context import RunContext
from tinyreason.data import synthetic
from tinyreason.eval.harness import EvalError
from tinyreason.evaluation import evaluate
from tinyreason.outputs import ModelRef, OutputDir
from tinyreason.storage import Storage


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An untrained micro Llama exported as a stage would be: <stage dir>/model/."""
    from tinyreason.model import presets
    from tinyreason.model.tokenizer import prepare_chat_tokenizer, train_bpe

    stage_dir = tmp_path_factory.mktemp("stage")
    model_dir = stage_dir / "model"
    tok = prepare_chat_tokenizer(train_bpe([r["text"] for r in synthetic.pretrain_rows(300, 0)], 400, model_dir))
    presets.init_model("micro", tok).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    return stage_dir


def _copy(exported, tmp_path):
    stage_dir = tmp_path / "stage"
    shutil.copytree(exported, stage_dir)
    return stage_dir, stage_dir / "model"


def _config(tmp_path, **evaluation):
    return validate_config({
        "name": "eval-failures", "storage": {"path": str(tmp_path / "storage")}, "model": {"preset": "micro"},
        "tracking": {"wandb": {"enabled": False}},
        "stages": [{"name": "pretrain", "kind": "pretrain", "data": {
            "blend": {"sources": [{"synthetic": "pretrain", "entries": 80}], "heldout_fraction": 0.25},
            "max_length": 64}}],
        "evaluation": {"heldout_problems": 0, "batch_size": 8, "max_new_tokens": 8, **evaluation},
    })


def _place(stage_dir) -> OutputDir:
    """The stage dir as an output dir: where its evaluations are cached."""
    return OutputDir(Storage(str(stage_dir.parent)), stage_dir.name)


def _snapshot(model_dir):
    return {p.name: p.read_bytes() for p in sorted(model_dir.iterdir())}


def _fails(cfg, name, stage_dir, model_dir, match, stage=None):
    before = _snapshot(model_dir)
    ref = ModelRef(name, str(model_dir), str(model_dir), "k")
    with pytest.raises(EvalError, match=match) as info:
        evaluate(RunContext.of(cfg), ref, _place(stage_dir), stage=stage)
    msg = str(info.value)
    assert msg.startswith(f"evaluating {name} failed in ") and f"kept at {model_dir}" in msg, msg
    assert "Traceback" not in msg, msg
    assert _snapshot(model_dir) == before  # every file still there, byte for byte
    assert not list(stage_dir.glob("eval-*.json"))  # nothing cached: a re-run evaluates again
    return msg


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_unloadable_weights_name_the_stage_and_the_heldout_probe(ray_local, exported, tmp_path, damage):
    stage_dir, model_dir = _copy(exported, tmp_path)
    weights = model_dir / "model.safetensors"
    weights.unlink() if damage == "missing" else weights.write_bytes(b"not a safetensors file")
    cfg = _config(tmp_path, heldout_problems=2)
    msg = _fails(cfg, "reasoning", stage_dir, model_dir, "evaluating reasoning failed in the held-out problems")
    assert "safetensor" in msg.lower(), msg  # says what is wrong with the dir


def test_corrupt_weights_in_the_suite_name_the_stage_and_the_tasks(ray_local, exported, tmp_path):
    stage_dir, model_dir = _copy(exported, tmp_path)
    (model_dir / "model.safetensors").write_bytes(b"\0" * 64)
    cfg = _config(tmp_path, benchmarks={"tasks": [{"task": "tinyreason_choice", "limit": 2}]})
    _fails(cfg, "sft", stage_dir, model_dir,
           rf"evaluating sft failed in the lm-eval suite \(tinyreason_choice\): model dir {model_dir} failed to load")


def test_missing_task_data_file_names_the_stage_and_the_task(ray_local, exported, tmp_path):
    stage_dir, model_dir = _copy(exported, tmp_path)
    task_dir, missing = task_with_missing_data(tmp_path)
    cfg = _config(tmp_path, benchmarks={"tasks": [{"task": "my_qa"}], "include_path": [str(task_dir)]})
    _fails(cfg, "dpo", stage_dir, model_dir,
           rf"evaluating dpo failed in the lm-eval suite \(my_qa\): task 'my_qa': data file {missing} is missing")


def test_pretrain_stage_gets_perplexity_and_samples_and_broken_weights_name_it(ray_local, exported, tmp_path):
    stage_dir, model_dir = _copy(exported, tmp_path)
    cfg = _config(tmp_path)
    stage = cfg.stages[0]
    ref = ModelRef("pretrain", str(model_dir), str(model_dir), "k")
    ctx = RunContext.of(cfg)
    result = evaluate(ctx, ref, _place(stage_dir), stage=stage)
    blend = ctx.blend(stage)
    p = result["pretrain"]
    assert p["documents"] == blend.manifest["heldout_rows"] > 0 and p["heldout_dir"] == str(blend.path / "heldout")
    assert math.isfinite(p["perplexity"]) and p["perplexity"] == pytest.approx(math.exp(p["nll"]))
    assert len(p["samples"]) == 3 and all("greedy" in s and "sampled" in s for s in p["samples"])
    assert [f.name for f in stage_dir.glob("eval-*.json")] and evaluate(ctx, ref, _place(stage_dir), stage=stage) == result
    assert evaluate(ctx, ref, _place(stage_dir)) is None  # not a pretrain stage, nothing else configured: no evaluation

    (model_dir / "model.safetensors").write_bytes(b"garbage")
    broken_dir = tmp_path / "broken"
    shutil.copytree(stage_dir, broken_dir, ignore=shutil.ignore_patterns("eval-*.json"))
    _fails(cfg, "pretrain", broken_dir, broken_dir / "model",
           rf"evaluating pretrain failed in pre-training perplexity on {blend.path / 'heldout'}", stage=stage)
