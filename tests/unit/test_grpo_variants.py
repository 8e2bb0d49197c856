"""bench/grpo_variants.py: GRPO variants beside their DPO parent, read from each stage's own record."""

import json
from pathlib import Path

import pytest


@pytest.fixture
def variants(bench_script):
    return bench_script("grpo_variants")


def _stage(root: Path, name: str, kind: str, acc: float, new: float, lr=5e-5, sources=None, peft=None,
           draws: int = 0, right: list[int] | None = None) -> Path:
    d = root / name
    d.mkdir()
    config = {"trainer": {"learning_rate": lr, "max_steps": 10, "num_generations": 8}, "rewards": [{"name": "correctness"}],
              "data": {"blend": {"sources": sources or [{"synthetic": "prompts", "entries": 2000}]}}}
    if peft:
        config["peft"] = peft
    (d / "manifest.json").write_text(json.dumps({"kind": kind, "config": config, "train_seconds": 60.04}))
    samples = [{"output": "<think>\n12 + 3 = 15\n15 - 4 = 10\n</think>\nThe answer is 10."},  # 1 of 2 right
               {"output": "<think>\nmax(3, 9) = 9\n9 > 4\n</think>\nThe answer is 9."}]
    for n, a in ((200, acc), (199, 0.99)):  # a second evaluation at other settings must not be read
        (d / f"eval-{n}.json").write_text(json.dumps({
            "n": n, "accuracy": a, "new_templates": {"accuracy": new, "samples": samples[1:]},
            "samples": samples[:1], "per_task": {"add_sub": a}, "format": {"well_formed": 1.0}}))
    if draws:  # the same stage evaluated again with `draws` answers per problem (evaluation.heldout_samples)
        right = right or [draws // 2] * 3
        drawn = [{**samples[i % 2], "id": f"p{i}", "right_of_k": r} for i, r in enumerate(right)]
        (d / "eval-draws.json").write_text(json.dumps({
            "n": 200, "draws": draws, "accuracy": acc + 0.01, "accuracy_se": 0.0171, "pass_at_k": 0.9,
            "new_templates": {"accuracy": new + 0.01, "pass_at_k": 0.6, "samples": drawn[1:]},
            "samples": drawn[:1] + drawn[2:], "per_task": {"add_sub": acc + 0.01}, "format": {"well_formed": 1.0}}))
    lines = [{"rewards/correctness/mean": 0.1 * i, "entropy": 0.1 * (i + 1)} for i in range(15)]
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in [{"event": "startup"}, *lines]) + "\n")
    return d


def test_each_variant_is_measured_against_its_parent_from_its_own_record(variants, tmp_path):
    parent = _stage(tmp_path, "03-dpo-a", "dpo", 0.34, 0.31)
    grpo = _stage(tmp_path, "04-grpo-b", "grpo", 0.36, 0.17, lr=1e-4)
    variants.main([str(parent), str(grpo)])
    out = json.loads(variants.OUT.read_text())
    (row,) = out["variants"]
    assert row["over_parent"] == pytest.approx(0.02) and row["over_parent_new_templates"] == pytest.approx(-0.14)
    assert row["trainer"]["learning_rate"] == 1e-4 and row["rewards"] == [{"name": "correctness"}]
    assert row["correctness_first_fifth"] == pytest.approx(0.1)  # 15 logs: the first 3, then the last 3
    assert row["correctness_last_fifth"] == pytest.approx(1.3)
    assert row["entropy_last_fifth"] == pytest.approx(1.4)
    assert out["parent"]["heldout_accuracy"] == 0.34
    # the steps written in both wordings' samples, checked by arithmetic
    assert out["parent"]["steps_true"] == {"add_take": 0.5, "fold": 1.0, "compare": 1.0}


def test_a_variant_whose_answer_reward_is_its_own_is_read_by_that_rewards_name(variants, tmp_path):
    parent = _stage(tmp_path, "03-dpo-a", "dpo", 0.34, 0.31)
    grpo = _stage(tmp_path, "04-grpo-b", "grpo", 0.36, 0.17)
    manifest = json.loads((grpo / "manifest.json").read_text())
    manifest["config"]["rewards"] = [{"name": "gated", "path": "gated_reward:gated_correctness"}]
    (grpo / "manifest.json").write_text(json.dumps(manifest))
    logs = [{"rewards/gated/mean": 0.05 * i, "entropy": 0.5} for i in range(10)]
    (grpo / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in logs) + "\n")
    variants.main([str(parent), str(grpo)])
    (row,) = json.loads(variants.OUT.read_text())["variants"]
    assert row["correctness_first_fifth"] == pytest.approx(0.025)  # 10 logs: the first 2, then the last 2
    assert row["correctness_last_fifth"] == pytest.approx(0.425)


def test_a_record_can_be_named_and_annotated(variants, tmp_path):
    parent = _stage(tmp_path, "03-dpo-a", "dpo", 0.34, 0.31)
    out = tmp_path / "grpo_variants_ladder.json"
    variants.main([str(parent), str(_stage(tmp_path, "04-grpo-b", "grpo", 0.36, 0.17)), "--out", str(out),
                   "--note", "on the new parent"])
    record = json.loads(out.read_text())
    assert record["name"] == "grpo_variants_ladder" and record["note"] == "on the new parent"


def test_a_stage_without_that_evaluation_or_not_grpo_is_refused_by_name(variants, tmp_path):
    parent = _stage(tmp_path, "03-dpo-a", "dpo", 0.34, 0.31)
    with pytest.raises(SystemExit, match="03-dpo-a: no evaluation on 150 .*heldout_problems=150"):
        variants.main([str(parent), str(_stage(tmp_path, "04-grpo-c", "grpo", 0.3, 0.3)), "--heldout", "150"])
    with pytest.raises(SystemExit, match="is a dpo stage"):
        variants.main([str(parent), str(parent)])


def test_a_variant_records_its_data_and_adapter_and_dpo_variants_read_with_kind(variants, tmp_path):
    parent = _stage(tmp_path, "03-dpo-a", "dpo", 0.34, 0.31)
    narrowed = [{"synthetic": "prompts", "entries": 2000, "tasks": ["compare", "count"]}]
    lora = {"r": 16, "lora_alpha": 32, "target_modules": "all-linear"}
    variants.main([str(parent), str(_stage(tmp_path, "04-grpo-b", "grpo", 0.36, 0.17, sources=narrowed)),
                   str(_stage(tmp_path, "04-grpo-c", "grpo", 0.38, 0.2, lr=2e-4, peft=lora))])
    rows = {r["stage_dir"]: r for r in json.loads(variants.OUT.read_text())["variants"]}
    assert rows["04-grpo-b"]["sources"] == narrowed and rows["04-grpo-b"]["peft"] is None
    assert rows["04-grpo-c"]["peft"] == lora and rows["04-grpo-c"]["trainer"]["learning_rate"] == 2e-4
    think = _stage(tmp_path, "02-reasoning-a", "reasoning_sft", 0.30, 0.2)
    pairs = [{"files": "pairs.jsonl"}]
    variants.main(["--kind", "dpo", str(think), str(_stage(tmp_path, "03-dpo-b", "dpo", 0.33, 0.2, sources=pairs))])
    record = json.loads(variants.OUT.read_text())
    (row,) = record["variants"]
    assert record["target"].startswith("DPO adds") and row["over_parent"] == pytest.approx(0.03)
    assert row["sources"] == pairs and "rewards" not in row and row["trainer"]["learning_rate"] == 5e-5


def test_samples_reads_the_evaluation_that_drew_that_many_answers_per_problem(variants, tmp_path):
    parent = _stage(tmp_path, "03-dpo-a", "dpo", 0.34, 0.31, draws=8, right=[4, 2, 8])
    grpo = _stage(tmp_path, "04-grpo-b", "grpo", 0.36, 0.17, draws=8, right=[6, 2, 4])
    variants.main([str(parent), str(grpo), "--samples", "8"])
    out = json.loads(variants.OUT.read_text())
    (row,) = out["variants"]
    # problem by problem (p0 and p2 in the training wording): gains 2/8 and -4/8
    assert row["over_parent_se"] == pytest.approx(abs(0.25 + 0.5) / 2, abs=1e-4)
    assert row["over_parent_new_templates_se"] == pytest.approx(0.25)  # p1 and p2 there: gains 0 and -4/8
    assert row["heldout_accuracy"] == pytest.approx(0.37) and out["parent"]["heldout_accuracy"] == pytest.approx(0.35)
    assert row["samples_per_problem"] == 8 and row["heldout_accuracy_se"] == 0.0171
    assert row["heldout_pass_at_k"] == 0.9 and row["new_templates_pass_at_k"] == 0.6
    variants.main([str(parent), str(grpo)])  # by default the one-draw evaluation, as before
    (row,) = json.loads(variants.OUT.read_text())["variants"]
    assert row["heldout_accuracy"] == 0.36 and "samples_per_problem" not in row
    with pytest.raises(SystemExit, match="no evaluation on 200 held-out problems with 4 draws each .*"
                                         "evaluation.heldout_samples=4"):
        variants.main([str(parent), str(grpo), "--samples", "4"])


def test_a_greedy_evaluation_of_the_same_stage_is_never_read_as_its_score(variants, tmp_path):
    parent = _stage(tmp_path, "03-dpo-a", "dpo", 0.34, 0.31)
    grpo = _stage(tmp_path, "04-grpo-b", "grpo", 0.36, 0.17)
    greedy = json.loads((grpo / "eval-200.json").read_text())
    # the same stage scored greedy, in a file that sorts first
    (grpo / "eval-0greedy.json").write_text(json.dumps({**greedy, "accuracy": 0.5,
                                                        "settings": {"decoding": {"do_sample": False}}}))
    variants.main([str(parent), str(grpo)])
    (row,) = json.loads(variants.OUT.read_text())["variants"]
    assert row["heldout_accuracy"] == 0.36
