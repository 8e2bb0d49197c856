"""The benchmark suite with real lm-eval on a tiny trained model, as a real Ray task:
the built-in tasks score, the scores land in lm_eval_results.json and in the table,
and the failures people hit (a model dir that does not load, a task whose data is
missing, a misspelt task) end in an EvalError that names them."""

import json
from pathlib import Path

import pytest

from tinyreason.config.sections import BenchmarkConfig, TaskSpec
from tinyreason.data import synthetic
from tinyreason.eval import harness, tables
from tinyreason.evaluation import run_suite_remote
from tinyreason.storage import Storage

from task_files import task_with_missing_data

LIMIT = 20


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A micro Llama after 40 AdamW steps on <think> traces: ~10 s on 2 cores."""
    import torch

    from tinyreason.model import presets
    from tinyreason.model.tokenizer import prepare_chat_tokenizer, train_bpe

    out = tmp_path_factory.mktemp("tiny-model")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Ray workers of other tests share these 2 cores; 2 threads thrash (~8x slower)
    try:
        tok = prepare_chat_tokenizer(train_bpe([r["text"] for r in synthetic.pretrain_rows(1000, 0)], 512, out))
        model = presets.init_model("micro", tok)
        texts = [tok.apply_chat_template(r["messages"], tokenize=False) for r in synthetic.reasoning_rows(320, 0)]
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        losses = []
        for step in range(40):
            enc = tok(texts[step % 20 * 16:][:16], return_tensors="pt", padding=True, add_special_tokens=False)
            loss = model(**enc, labels=enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
    assert losses[-1] < losses[0] - 1.0, losses  # it learned something: scores come from a trained model
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def suite(ray_local, tiny_model, tmp_path_factory):
    bench = BenchmarkConfig(
        tasks=[TaskSpec(task="tinyreason_reasoning", limit=LIMIT),
               TaskSpec(task="tinyreason_choice", limit=LIMIT, num_fewshot=2, metric="acc_norm")],
        batch_size=LIMIT, max_gen_toks=48)
    out = tmp_path_factory.mktemp("eval")
    return out, run_suite_remote(Storage(str(out)), tiny_model, bench, out)


def test_builtin_suite_scores_land_in_results_json(suite):
    out, result = suite
    assert set(result["primary"]) == {"tinyreason_reasoning", "tinyreason_choice"}
    assert all(0.0 <= v <= 1.0 for v in result["primary"].values())
    assert result["primary"]["tinyreason_choice"] == result["scores"]["tinyreason_choice"]["acc_norm"]
    saved = json.loads((out / harness.RESULTS_FILE).read_text())
    assert saved["primary"] == result["primary"] and saved["scores"] == result["scores"]
    lm = saved["lm_eval"]
    assert lm["n-shot"] == {"tinyreason_reasoning": 0, "tinyreason_choice": 2}  # per-task few-shot honoured
    assert {t: n["effective"] for t, n in lm["n-samples"].items()} == {
        "tinyreason_reasoning": LIMIT, "tinyreason_choice": LIMIT}


def test_per_sample_outputs_agree_with_the_scores(suite):
    out, result = suite
    rows = [json.loads(line) for line in (out / "samples_tinyreason_reasoning.jsonl").read_text().splitlines()]
    assert len(rows) == LIMIT and result["samples_files"]["tinyreason_reasoning"] == str(
        out / "samples_tinyreason_reasoning.jsonl")
    assert all(r["filter"] == "final_answer" and r["arguments"][0][0].startswith("<|im_start|>system") for r in rows)
    mean = sum(r["exact_match"] for r in rows) / LIMIT
    assert result["primary"]["tinyreason_reasoning"] == pytest.approx(mean)
    choice = [json.loads(line) for line in (out / "samples_tinyreason_choice.jsonl").read_text().splitlines()]
    assert len(choice) == LIMIT and len(choice[0]["resps"]) == 4  # one log-likelihood per option


def test_every_score_keeps_its_standard_error(suite):
    out, result = suite
    v = result["primary"]["tinyreason_choice"]  # acc_norm over LIMIT items: lm-eval's sample-std stderr
    expected = (v * (1 - v) / (LIMIT - 1)) ** 0.5
    assert result["primary_stderr"]["tinyreason_choice"] == pytest.approx(expected)
    assert result["stderr"]["tinyreason_choice"]["acc"] is not None and result["n"] == {
        "tinyreason_reasoning": LIMIT, "tinyreason_choice": LIMIT}
    saved = json.loads((out / harness.RESULTS_FILE).read_text())
    assert saved["primary_stderr"] == result["primary_stderr"] and saved["stderr"] == result["stderr"]


def test_scores_feed_the_table_and_the_objective(suite):
    _, result = suite
    base = {task: 0.0 for task in result["primary"]}
    table = tables.results_table({"base": base, "trained": result["primary"]}, base="base")
    v = result["primary"]["tinyreason_choice"]
    assert [c.strip() for c in next(line for line in table.splitlines() if "tinyreason_choice" in line)
            .strip("|").split("|")] == ["tinyreason_choice", "0.000", f"{v:.3f}"]
    assert tables.objective(result["primary"], {}) == pytest.approx(sum(result["primary"].values()) / 2)
    acc = tables.objective(result["primary"], {"tinyreason_choice/acc": 1.0}, result["scores"])
    assert acc == result["scores"]["tinyreason_choice"]["acc"]


def test_unloadable_model_dir_is_an_eval_error_naming_it(ray_local, tiny_model, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    for f in tiny_model.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    bench = BenchmarkConfig(tasks=[TaskSpec(task="tinyreason_choice", limit=2)])
    with pytest.raises(harness.EvalError, match=f"model dir {broken} failed to load.*re-export the stage") as info:
        run_suite_remote(Storage(str(tmp_path)), broken, bench, tmp_path / "eval")
    assert "Traceback" not in str(info.value)  # the worker's error comes back as its message, not a Ray dump


def test_missing_task_data_file_names_the_task_and_the_file(tiny_model, tmp_path):
    task_dir, missing = task_with_missing_data(tmp_path)
    bench = BenchmarkConfig(tasks=[TaskSpec(task="my_qa")], include_path=[str(task_dir)])
    with pytest.raises(harness.EvalError, match=f"task 'my_qa': data file {missing} is missing"):
        harness.run_suite(tiny_model, bench, tmp_path / "eval")


def test_unknown_task_is_named_with_suggestions(tiny_model, tmp_path):
    bench = BenchmarkConfig(tasks=[TaskSpec(task="tinyreason_reasonin")])
    with pytest.raises(harness.EvalError, match="unknown lm-eval task 'tinyreason_reasonin'; did you mean "
                                                 "tinyreason_reasoning"):
        harness.run_suite(tiny_model, bench, tmp_path / "eval")


def test_a_misnamed_metric_keeps_the_finished_scores(tiny_model, tmp_path):
    bench = BenchmarkConfig(tasks=[TaskSpec(task="tinyreason_choice", limit=4, metric="f1")], batch_size=4)
    with pytest.raises(harness.EvalError, match="metric 'f1' is not reported; reported: acc, acc_norm; every reported"):
        harness.run_suite(tiny_model, bench, tmp_path / "eval")
    saved = json.loads((tmp_path / "eval" / harness.RESULTS_FILE).read_text())
    assert set(saved["scores"]["tinyreason_choice"]) == {"acc", "acc_norm"}
