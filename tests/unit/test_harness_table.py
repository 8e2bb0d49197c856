"""The sweep objective, the benchmark table and the built-in task files, without running lm-eval."""

import json

import pytest

from tinyreason.data import synthetic
from tinyreason.eval import harness, tables, tasks
from tinyreason.stats import Score
from tinyreason.data.world import EVAL_SEED
from tinyreason.eval.tasks.utils import final_answers

PRIMARY = {"arc_challenge": 0.30, "gsm8k": 0.10, "ifeval": 0.50}
SCORES = {"gsm8k": {"exact_match,strict-match": 0.10, "exact_match,flexible-extract": 0.20},
          "arc_challenge": {"acc": 0.30, "acc_norm": 0.34}, "ifeval": {"prompt_level_strict_acc": 0.5}}


def test_empty_weights_are_the_plain_mean():
    assert tables.objective(PRIMARY, {}) == pytest.approx(0.30)


def test_weights_by_task_and_by_task_metric():
    assert tables.objective(PRIMARY, {"arc_challenge": 1, "gsm8k": 3}) == pytest.approx((0.30 + 0.30) / 4)
    value = tables.objective(PRIMARY, {"gsm8k/exact_match,flexible-extract": 1, "arc_challenge/acc_norm": 1},
                              SCORES)
    assert value == pytest.approx((0.20 + 0.34) / 2)


def test_missing_task_in_weights_is_named():
    with pytest.raises(ValueError, match="'mmlu'.*not scored.*evaluation.benchmarks.tasks"):
        tables.objective(PRIMARY, {"mmlu": 1.0})
    with pytest.raises(ValueError, match="'gsm8k/exact_match'.*ambiguous"):
        tables.objective(PRIMARY, {"gsm8k/exact_match": 1.0}, SCORES)
    with pytest.raises(ValueError, match="sum to more than 0"):
        tables.objective(PRIMARY, {"gsm8k": 0.0})


def test_pick_metric_drops_the_none_filter_and_matches_a_prefix():
    assert harness.pick_metric({"acc": 0.3, "acc_norm": 0.4}, None, "t") == 0.3
    assert harness.pick_metric({"exact_match,final_answer": 0.7}, "exact_match", "t") == 0.7
    with pytest.raises(harness.EvalError, match="'f1' is not reported; reported: acc"):
        harness.pick_metric({"acc": 0.3}, "f1", "task 'x'")


def _rows(table: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.strip().splitlines()]


def test_results_table_has_a_row_per_benchmark_a_column_per_stage_base_first():
    table = tables.results_table({
        "sft": {"tinyreason_reasoning": Score(0.20, 0.040), "tinyreason_choice": Score(0.40, 0.049)},
        "base": {"tinyreason_reasoning": Score(0.05, 0.022), "tinyreason_choice": Score(0.30, 0.046)},
        "dpo": {"tinyreason_reasoning": Score(0.35, 0.048)},
    }, base="base")
    rows = _rows(table)
    assert rows[0] == ["benchmark", "base", "sft", "dpo"]
    assert rows[2] == ["tinyreason_reasoning", "0.050 ± 0.022", "0.200 ± 0.040", "0.350 ± 0.048"]
    assert rows[3] == ["tinyreason_choice", "0.300 ± 0.046", "0.400 ± 0.049", "-"]
    assert len(rows) == 4


def test_results_table_takes_plain_numbers_too():
    table = tables.results_table({"model": {"gsm8k": 0.125}}, base=None)
    assert _rows(table)[2] == ["gsm8k", "0.125"] and "±" not in table


def test_materialize_writes_absolute_data_paths_and_held_out_rows(tmp_path):
    from lm_eval.tasks import TaskManager

    out = tasks.materialize(tmp_path / "t", n_heldout=30)
    text = (out / "tinyreason_reasoning.yaml").read_text()
    assert json.dumps(str(out / tasks.HELDOUT_FILE)) in text
    rows = [json.loads(line) for line in (out / tasks.HELDOUT_FILE).read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in synthetic.eval_rows(30, EVAL_SEED)]
    assert all(r["options"][r["gold"]] == f"The answer is {r['answer']}." for r in rows)
    heldout_questions = {r["question"] for r in rows}
    train = [json.loads(line) for line in (out / tasks.TRAIN_FILE).read_text().splitlines()]
    assert not heldout_questions & {r["question"] for r in train}  # few-shot examples never leak held-out problems
    tm = TaskManager(include_path=[str(out)], include_defaults=False)
    assert {"tinyreason", *tasks.TASKS} <= set(tm.all_tasks)


def test_final_answer_filter_takes_the_text_after_think():
    # lm-eval's hf model decodes with skip_special_tokens: a special-token </think> arrives stripped
    stripped = "\n29 < 41\nso the smaller is 29\n\nThe answer is 29."
    resps = [["<think>\n2 + 3 = 5\n</think>\nThe answer is 5."], [stripped], ["The answer is **no**."], ["banana"]]
    assert final_answers(resps, [{}] * 4) == [["5"], ["29"], ["no"], ["banana"]]


def test_a_dir_without_config_json_is_an_eval_error_naming_it(tmp_path):
    with pytest.raises(harness.EvalError, match=f"model dir {tmp_path}.*no config.json.*stage output dir"):
        harness.resolve_model_dir(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    assert harness.resolve_model_dir(tmp_path) == tmp_path / "model"
