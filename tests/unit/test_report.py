"""The reports on hand-made scores: standard errors reach every compared number, deltas say
whether they exceed the noise, the sweep marks trials within noise of the best, figures are
drawn from each kind's declared curves, generations show <think> apart, model cards have the
Hugging Face shape; and the rendered pages read cleanly in headless Chromium."""

import json
import math
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/browser.py and made_runs.py: helpers

import browser  # noqa: E402
import made_runs  # noqa: E402
from tinyreason import cards, report  # noqa: E402
from tinyreason.eval import harness, tables  # noqa: E402
from tinyreason.eval.scores import objective_score, primary_with_errors, table_with_errors  # noqa: E402
from tinyreason.generations import heldout_intro, heldout_samples  # noqa: E402
from tinyreason.plots import StageCurves, curve_lines, plot_curves  # noqa: E402
from tinyreason.render import markdown_to_html  # noqa: E402
from tinyreason.stats import Score, proportion_se  # noqa: E402
from tinyreason.train import registry  # noqa: E402
from tinyreason.tune import report as sweep_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "reports"
needs_chromium = pytest.mark.skipif(browser.missing_browser() is not None, reason=str(browser.missing_browser()))


# --------------------------------------------------------------------------- standard errors


def test_lm_eval_stderrs_are_kept_and_missing_ones_bootstrapped_from_samples():
    results = {"choice": {"alias": "choice", "sample_len": 20, "acc,none": 0.25, "acc_stderr,none": 0.0993,
                          "acc_norm,none": 0.3, "acc_norm_stderr,none": "N/A"},
               "reasoning": {"sample_len": 20, "exact_match,final_answer": 0.0,
                             "exact_match_stderr,final_answer": 0.0}}
    scores = {"choice": {"acc": 0.25, "acc_norm": 0.3}, "reasoning": {"exact_match,final_answer": 0.0}}
    samples = {"choice": [{"filter": "none", "acc_norm": float(i % 10 < 3)} for i in range(20)]}
    ses = harness.stderrs(results, scores, samples)
    assert ses["choice"]["acc"] == 0.0993 and ses["reasoning"]["exact_match,final_answer"] == 0.0
    # "N/A" from lm-eval: a bootstrap over the 20 logged items, near the binomial sqrt(.3*.7/20) = 0.102
    assert ses["choice"]["acc_norm"] == pytest.approx(0.102, abs=0.02)
    assert harness.stderrs(results, scores, {})["choice"]["acc_norm"] is None  # no samples kept: unknown


def test_scores_carry_their_errors():
    ev = made_runs.evaluation(0.12, 0.45, 0.05, 0.0)
    scores = primary_with_errors(ev)
    assert scores["heldout/accuracy"] == Score(0.12, math.sqrt(0.12 * 0.88 / 100), 100)  # binomial over n=100
    assert scores["tinyreason_choice"] == Score(0.45, 0.05, 100)  # lm-eval's stderr as given
    # lm-eval's stderr of 0/100 is 0, which would call any gain beyond noise: the Wilson-based se instead
    assert scores["tinyreason_reasoning"].se == pytest.approx(proportion_se(0.0, 100)) and \
        scores["tinyreason_reasoning"].se > 0.009
    assert table_with_errors({"pretrain": {"perplexity": 40.0}}) == {"pretrain/perplexity": Score(40.0)}
    old = {"accuracy": 0.5, "format": {"well_formed": 1.0}}  # cached before errors were kept: no n
    assert primary_with_errors(old)["heldout/accuracy"] == Score(0.5)


def test_objective_error_is_the_weighted_mean_of_the_parts_errors():
    ev = made_runs.evaluation(0.1, 0.45, 0.05, 0.2)
    reasoning_se = math.sqrt(0.2 * 0.8 / 99)
    s = objective_score(ev, {})  # no weights: the mean of the lm-eval tasks
    assert s.value == pytest.approx((0.45 + 0.2) / 2) and s.se == pytest.approx((0.05 + reasoning_se) / 2)
    s = objective_score(ev, {"tinyreason_choice/acc_norm": 3, "heldout/accuracy": 1})
    assert s.value == pytest.approx((3 * 0.46 + 0.1) / 4) and s.se == pytest.approx((3 * 0.05 + 0.03) / 4)
    ev["benchmarks"]["primary_stderr"]["tinyreason_choice"] = None
    assert objective_score(ev, {}).se is None  # one part unknown: the whole is


def test_results_table_shows_plus_minus_one_se():
    table = tables.results_table({"sft": {"tinyreason_choice": Score(0.4, 0.049), "pretrain/perplexity": Score(12.5)},
                                   "base": {"tinyreason_choice": Score(0.25, 0.0433)}}, base="base")
    lines = [[c.strip() for c in line.strip("|").split("|")] for line in table.strip().splitlines()]
    assert lines[0] == ["benchmark", "base", "sft"]
    assert lines[2] == ["tinyreason\\_choice" if "\\_" in lines[2][0] else "tinyreason_choice", "0.250 ± 0.043",
                        "0.400 ± 0.049"]
    assert lines[3][1:] == ["-", "12.500"]  # no se known: the value alone, never "± 0"


# --------------------------------------------------------------------------- deltas and the sweep


def _cells(table: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.strip().splitlines()[2:]]


def test_delta_phrases_say_whether_a_change_exceeds_the_noise():
    cols = {"base": {"choice": Score(0.30, 0.046), "ppl": Score(500.0)},
            "sft": {"choice": Score(0.34, 0.047), "ppl": Score(40.0)},
            "dpo": {"choice": Score(0.60, 0.049)}}
    rows = {r[0]: r[1:] for r in _cells(report.delta_table(cols))}
    assert rows["choice"] == ["+4.0 points (± 6.6), within noise", "+30.0 points (± 6.7), beyond noise"]
    assert rows["ppl"][1] == "-"
    assert report.delta_table({"sft": cols["sft"]}) == ""  # no base: nothing to compare against


def test_perplexity_deltas_read_as_they_are_and_are_not_called_without_an_error():
    cols = {"base": {"pretrain/perplexity": Score(500.0)}, "pretrain": {"pretrain/perplexity": Score(40.25)}}
    (row,) = _cells(report.delta_table(cols))
    assert row[1] == "-459.75 (± ?), spread unknown: not called either way"


def test_sweep_marks_trials_within_noise_of_the_best_in_the_table_and_in_words():
    trials = [made_runs.trial(i, *t) for i, t in enumerate(made_runs.TRIALS)]
    best = trials[0]
    marks = sweep_report.noise_marks(trials, best)
    assert marks == {"run_trial_00000": "best", "run_trial_00001": "within noise", "run_trial_00002": "within noise",
                     "run_trial_00003": "-20.7 points (± 4.4), beyond noise"}
    words = sweep_report.noise_sentence(trials, best)
    assert "Within noise of it: `run_trial_00001`, `run_trial_00002`" in words and "cannot rank" in words
    alone = sweep_report.noise_sentence([best, trials[3]], best)
    assert alone.startswith("Every other finished trial is below it by more than the noise")
    unknown = [made_runs.trial(i, b, o, None) for i, (b, o, _) in enumerate(made_runs.TRIALS)]
    assert "no trial is called apart" in sweep_report.noise_sentence(unknown, unknown[0])


def test_metric_aliases_collapse_into_one_column():
    trials = [made_runs.trial(0, 0.1, 0.2, 0.04)]
    assert sweep_report.benchmark_keys(trials) == ["tinyreason_choice", "heldout/accuracy"]


def test_sweep_report_in_words_and_table(tmp_path):
    result = made_runs.sweep_result(tmp_path)
    text = sweep_report.write_sweep_report(result).read_text()
    assert "objective 0.227 ± 0.042 with beta=0.05. Within noise of it: `run_trial_00001`, `run_trial_00002`" in text
    head = next(line for line in text.splitlines() if line.startswith("| trial"))
    assert "tinyreason_choice/acc" not in head and head.count("tinyreason") == 1  # one column per benchmark
    assert str(tmp_path) not in text  # paths relative to the storage root
    parent_rows = _cells(text.split("### Best trial against the parent stage")[1].split("## Plots")[0])
    assert parent_rows[0][0] == "tinyreason\\_choice" or parent_rows[0][0] == "tinyreason_choice"
    assert parent_rows[0][1:] == ["0.200 ± 0.040", "0.227 ± 0.042", "+2.7 points (± 5.8), within noise"]


# --------------------------------------------------------------------------- figures


def test_curve_keys_with_a_star_give_one_line_per_segment():
    metrics = [{"step": 2, "rewards/a/mean": 0.1, "rewards/b/mean": 0.5, "rewards/a/std": 9},
               {"step": 4, "rewards/a/mean": 0.3, "reward": float("nan")}, {"event": "startup", "reward": 1}]
    assert curve_lines(metrics, "rewards/*/mean") == {"a": [(2, 0.1), (4, 0.3)], "b": [(2, 0.5)]}
    assert curve_lines(metrics, "reward") == {}  # NaN and step-less logs are skipped
    assert curve_lines([{"step": 1, "loss": 0.0}], "loss", math.exp) == {"loss": [(1, 1.0)]}


def _png_size(path: Path) -> tuple[int, int]:
    import struct

    return struct.unpack(">II", path.read_bytes()[16:24])


def test_every_declared_curve_is_drawn_at_reading_size(tmp_path):
    result = made_runs.curriculum_result(tmp_path)
    groups = report.curve_groups(result)
    assert [[o.stage.name for o in g] for g in groups] == [["pretrain"], ["sft", "reasoning"], ["dpo"], ["grpo"]]
    for group in groups:
        curves = registry.get(group[0].stage.kind).curves
        stages = [StageCurves(o.stage.name, o.metrics, {"pretrain/perplexity": 40.0}) for o in group]
        path = plot_curves(stages, curves, tmp_path / f"{group[0].stage.name}.png", title="t")
        width, height = _png_size(path)
        assert width == 900 and 250 < height < 1400, (group[0].stage.kind, width, height)
    assert plot_curves([StageCurves("x", [{"step": 1}], {})], registry.get("sft").curves, tmp_path / "n.png") is None


# --------------------------------------------------------------------------- generations and cards


def test_generations_set_think_apart_and_mark_correct_and_wrong():
    blocks = heldout_samples(made_runs.evaluation(0.25, 0.3, 0.04, 0.0))
    assert len(blocks) == 4
    assert blocks[0].startswith("<details open><summary>✓ correct: Which is smaller") and "answered 29" in blocks[0]
    assert "thinking, inside \\<think> ... \\</think>\n\n```text\n29 < 41\nso the smaller is 29\n```" in blocks[0]
    assert "answer, after \\</think>\n\n```text\nThe answer is 29.\n```" in blocks[0]
    assert blocks[1].startswith("<details><summary>✗ wrong") and "**wrong** | a pipe" in blocks[1]
    assert "<think> never closed" in blocks[2].replace("\\", "") and "answered nothing" in blocks[2]
    assert "output (no \\<think> block)" in blocks[3]
    looping = made_runs.evaluation(0.0, 0.3, 0.04, 0.0)
    looping["samples"][0].update(answer="is " * 40, correct=False)
    summary = heldout_samples(looping, k=1)[0].split("</summary>")[0]
    assert summary.endswith("answered is is is is is is is is is is is is is…)")  # the full output is below


def test_the_samples_intro_says_how_they_were_decoded_and_over_how_many_draws():
    ev = made_runs.evaluation(0.25, 0.3, 0.04, 0.0)
    assert "as the evaluation decodes; accuracy over all 100: 25.0%." in heldout_intro(ev)  # no settings kept
    ev["settings"] = {"decoding": {"do_sample": True, "temperature": 0.6, "top_p": 0.95}}
    assert "sampled at temperature 0.6, top-p 0.95, seeded; accuracy over all 100: 25.0%." in heldout_intro(ev)
    ev.update(settings={"decoding": {"do_sample": False}}, draws=8)
    assert heldout_intro(ev).endswith("greedy decoding; accuracy over all 100: 25.0%, the mean of 8 draws per "
                                      "problem (the first shown).")


def test_model_card_has_the_hugging_face_shape(tmp_path):
    result = made_runs.curriculum_result(tmp_path)
    o = result.stages[3]
    blend = {"sources": [{"source": "HuggingFaceTB/smoltalk2", "subset": "", "split": "train", "kept": 90,
                          "share": 0.9}, {"source": "synthetic:preference", "subset": "", "split": "train",
                                          "kept": 10, "share": 0.1}]}
    cards.write_card(o.output, o.manifest, blend, o.evaluation, "HuggingFaceTB/SmolLM2-135M-Instruct", "micro")
    text = (o.output.model_dir / "README.md").read_text()
    header = yaml.safe_load(text.split("---")[1])
    assert header["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and header["license"] == "apache-2.0"
    assert header["datasets"] == ["HuggingFaceTB/smoltalk2", "synthetic:preference"] and header["language"] == ["en"]
    assert {"tinyreason", "dpo"} <= set(header["tags"]) and header["library_name"] == "transformers"
    results = header["model-index"][0]["results"]
    metrics = {r["dataset"]["name"]: r["metrics"][0] for r in results}
    assert metrics["tinyreason_choice"]["value"] == 0.6 and metrics["tinyreason_choice"]["type"] == "acc"
    assert metrics["heldout/accuracy"]["type"] == "accuracy" and "± 0.0490 se" in metrics["tinyreason_choice"]["name"]
    assert "| tinyreason_choice " in text and "0.600 ± 0.049" in text and "HuggingFaceTB/smoltalk2" in text
    assert "beta: 0.1" in text and "loss_type: apo_zero" in text  # the stage's settings
    from huggingface_hub import ModelCard

    assert ModelCard.load(o.output.model_dir / "README.md").data.base_model == header["base_model"]
    assert cards.hub_base("micro", None) is None and cards.hub_base(None, "./local/dir") is None


def test_a_scratch_model_card_says_its_license_is_unknown(tmp_path):
    o = made_runs.curriculum_result(tmp_path).stages[0]
    card = str(cards.model_card(o.manifest, None, None, None, "micro"))
    header = yaml.safe_load(card.split("---")[1])
    assert header["license"] == "other" and "base_model" not in header and "Not evaluated yet." in card


# --------------------------------------------------------------------------- the curriculum report


def test_curriculum_report_holds_figures_errors_deltas_and_samples(tmp_path):
    result = made_runs.curriculum_result(tmp_path)
    path = report.write_report(result)
    text = path.read_text()
    for name in ("curves-01-pretrain.png", "curves-02-sft-reasoning.png", "curves-03-dpo.png", "curves-04-grpo.png",
                 "benchmarks.png"):
        assert f"]({name})" in text and (path.parent / name).exists(), name
    assert "0.300 ± 0.046" in text and "0.600 ± 0.049" in text
    assert "+30.0 points (± 6.7), beyond noise" in text and "+2.0 points (± 6.5), within noise" in text
    assert "### reasoning (reasoning_sft)" in text and "✗ wrong" in text and "✓ correct" in text
    assert "## Completions during training" in text and "step 4, reward 1.00" in text
    assert str(tmp_path) not in text  # every path relative to the run or storage root
    results = json.loads((path.parent / "results.json").read_text())
    assert results["benchmarks"]["dpo"]["tinyreason_choice"] == {"value": 0.6, "se": 0.049, "n": 100}


def test_a_new_section_is_one_function(tmp_path):
    result = made_runs.curriculum_result(tmp_path)
    text = report.write_report(result, [report.stages_section, lambda r: "## Cost\n\n42 worker-hours"]).read_text()
    assert text.rstrip().endswith("## Cost\n\n42 worker-hours") and "## Benchmarks" not in text


@pytest.fixture(scope="module")
def chrome():
    with browser.chromium() as driver:
        yield driver


@needs_chromium
def test_both_reports_read_cleanly_in_chromium(tmp_path, chrome):
    curriculum = report.write_report(made_runs.curriculum_result(tmp_path / "c")).with_suffix(".html")
    sweep = sweep_report.write_sweep_report(made_runs.sweep_result(tmp_path / "s")).with_suffix(".html")
    assert browser.check_report(curriculum, ARTIFACTS / "made-curriculum.png", chrome) == []
    assert browser.check_report(sweep, ARTIFACTS / "made-sweep.png", chrome) == []


@needs_chromium
def test_a_report_with_a_broken_table_or_a_missing_figure_fails(tmp_path, chrome):
    md = report.write_report(made_runs.curriculum_result(tmp_path))
    (md.parent / "benchmarks.png").unlink()
    broken = md.read_text().replace("## Training curves", "a stray line\n| --- | --- |\n\n"  # table syntax as text
                                    "<table><tr><th>a</th><th>b</th></tr><tr><td>1</td></tr></table>\n\n"
                                    "## Training curves")
    page = md.parent / "broken.html"
    page.write_text(markdown_to_html(broken, md.parent, "broken"), encoding="utf-8")
    problems = browser.check_report(page, ARTIFACTS / "bad-made-curriculum.png", chrome)
    for caught in ("missing figure: benchmarks.png", "table syntax outside a table", "row 1 has 1 cells"):
        assert any(caught in p for p in problems), (caught, problems)


def test_blend_composition_table_holds_any_source_name():
    from tinyreason.data.card import composition_table

    manifest = {"sources": [{"source": "odd|name\nwith newline", "subset": "", "split": "train", "requested": None,
                             "kept": 1200, "rejected": {"bad_json": 2}, "decontaminated": 1, "share": 1.0}],
                "rejected_total": 2, "decontaminated_total": 1}
    lines = composition_table(manifest).splitlines()
    assert len(lines) == 4 and "odd\\|name<br>with newline" in lines[2]
    assert [c.strip() for c in lines[3].strip("|").split("|")] == ["total", "", "", "", "1,200", "2", "1", "100%"]
