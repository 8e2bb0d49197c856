"""Evaluation fit for reasoning models, without Ray: what a benchmark's metric sees of a
`<think>` output (checked with IFEval's real instruction checker), the bad settings that must
fail before anything runs, and pass@k / maj@k from per-sample rows."""

import os

import pytest
from pydantic import ValidationError

from tinyreason.answers import NO_ANSWER, UNCLOSED, answer_for_metric, answer_key, answers_match
from tinyreason.config.evaluation import BenchmarkConfig, EvalConfig, PromptConfig, TaskSpec
from tinyreason.eval import harness, samples, thinking
from tinyreason.stats import maj_at_k_over_items, pass_at_k


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    """A small BPE with the chat tokens and <think>/</think> as single special tokens (~1 s)."""
    from tinyreason.data import synthetic
    from tinyreason.model.tokenizer import add_think_tokens, prepare_chat_tokenizer, train_bpe

    out = tmp_path_factory.mktemp("tok")
    t = prepare_chat_tokenizer(train_bpe([r["text"] for r in synthetic.pretrain_rows(200, 0)], 300, out))
    add_think_tokens(t)
    return t


@pytest.fixture(scope="module")
def ifeval():
    # lm-eval's IFEval module downloads nltk's punkt at import on rank 0; no test touches the
    # network, and the no-comma checker needs no punkt: import it as a non-zero rank.
    saved = os.environ.get("LOCAL_RANK")
    os.environ["LOCAL_RANK"] = "1"
    try:
        from lm_eval.tasks.ifeval import utils
    finally:
        os.environ.pop("LOCAL_RANK") if saved is None else os.environ.__setitem__("LOCAL_RANK", saved)
    return utils


NO_COMMA = {"key": 1, "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}],
            "prompt": "What is the capital of France? Do not use any commas."}


def test_ifeval_no_comma_sees_only_the_answer_after_think(tok, ifeval):
    # the stub model's decoded output, special tokens as the generation path decodes them
    gen = thinking.from_text(tok, "<think>a, b</think>Paris<|im_end|>", ["<|im_end|>"], think_tokens=4,
                             forced_close=False, hit_limit=False)
    assert (gen.answer, gen.thinking, gen.no_answer) == ("Paris", "a, b", None)
    assert gen.text == "<think>a, b</think>Paris"  # the thinking is kept for the per-sample file
    assert ifeval.process_results(NO_COMMA, [gen.answer])["prompt_level_strict_acc"] is True
    # what lm-eval's hf model would have scored: tags dropped by skip_special_tokens, the trace included
    assert ifeval.process_results(NO_COMMA, ["a, bParis"])["prompt_level_strict_acc"] is False


def test_a_trace_that_never_closes_is_no_answer_and_counted(tok, ifeval):
    gens = [thinking.from_text(tok, text, ["<|im_end|>"], think_tokens=3, forced_close=False, hit_limit=hit)
            for text, hit in (("<think>a, b Paris", True), ("<think>a</think>   ", False),
                              ("<think>a</think>Paris", False))]
    assert [(g.answer, g.no_answer) for g in gens] == [("", UNCLOSED), ("", NO_ANSWER), ("Paris", None)]
    assert gens[0].thinking == "a, b Paris"
    assert ifeval.process_results(NO_COMMA, [gens[0].answer])["prompt_level_strict_acc"] is False
    counts = thinking.summarize(gens)
    assert (counts["n"], counts["unclosed"], counts["no_answer"], counts["hit_limit"]) == (3, 1, 2, 1)


def test_stop_sequences_cut_the_answer_never_the_thinking(tok):
    text = "<think>step one\n\nstep two\n\n</think>Paris\n\nmore"
    assert thinking.cut_at_stops(text, ["\n\n"]) == "<think>step one\n\nstep two\n\n</think>Paris"
    assert thinking.cut_at_stops("<think>still\n\nthinking", ["\n\n"]) == "<think>still\n\nthinking"
    assert thinking.cut_at_stops("no tags\n\nhere", ["\n\n"]) == "no tags"


def test_answer_for_metric_without_think_tags_is_the_whole_reply():
    assert answer_for_metric("  Paris") == ("Paris", None)


@pytest.mark.parametrize("a,b", [("12", "12.0"), ("$12", "12"), ("1,200", "1200"), ("3/4", "0.75"),
                                 ("Yes.", "yes"), ("12", "13"), ("Paris", "paris!"), ("5", "five")])
def test_answer_key_agrees_with_answers_match(a, b):
    assert (answer_key(a) == answer_key(b)) == answers_match(a, b)


# ------------------------------------------------------------------ bad input


def test_repeats_with_greedy_decoding_is_an_error_naming_the_fix():
    with pytest.raises(ValidationError, match="repeats: 8 with greedy decoding would give 8 identical samples"):
        TaskSpec(task="gsm8k", repeats=8, decoding="greedy")
    with pytest.raises(ValidationError, match="identical samples"):
        TaskSpec(task="gsm8k", repeats=4, temperature=0)


def test_heldout_draws_with_greedy_decoding_is_an_error_naming_the_fix():
    with pytest.raises(ValidationError, match="heldout_samples: 4 with greedy decoding would give 4 identical "
                                              "answers per problem; set heldout_samples: 1, or decoding: reasoning"):
        EvalConfig(heldout_samples=4, decoding={"decoding": "greedy"})
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        EvalConfig(heldout_samples=0)


def _gen(text: str) -> thinking.Generation:
    split = text.partition("</think>")
    return thinking.Generation(text, split[0].removeprefix("<think>"), split[2].strip(), None, 3, False, False)


def test_heldout_accuracy_over_draws_is_the_mean_with_its_error_over_problems_and_pass_at_k():
    from tinyreason.eval.heldout import score
    from tinyreason.eval.scores import primary_with_errors

    rows = [{"id": i, "task": t, "question": f"q{i}", "answer": a}
            for i, (t, a) in enumerate([("add_sub", "7"), ("add_sub", "3"), ("count", "2"), ("count", "1")])]
    right, wrong = "<think>\nx\n</think>\nThe answer is {}.", "<think>\nx\n</think>\nThe answer is 99."
    # draws x problems: problem 0 right 3 of 3, problem 1 1 of 3, problem 2 0 of 3, problem 3 2 of 3
    hits = [[1, 1, 0, 1], [1, 0, 0, 1], [1, 0, 0, 0]]
    draws = [[_gen(right.format(r["answer"]) if h else wrong) for r, h in zip(rows, draw)] for draw in hits]
    result = score(rows, draws)
    per_problem = [1, 1 / 3, 0, 2 / 3]
    assert result["accuracy"] == pytest.approx(0.5) and result["draws"] == 3
    assert result["pass_at_k"] == pytest.approx(0.75)  # problem 2 never right
    assert result["per_task"] == {"add_sub": pytest.approx(2 / 3), "count": pytest.approx(1 / 3)}
    mean = sum(per_problem) / 4
    sd = (sum((p - mean) ** 2 for p in per_problem) / 3) ** 0.5
    assert result["accuracy_se"] == pytest.approx(sd / 2)
    assert [s["right_of_k"] for s in result["samples"]] == [3, 1, 0, 2]
    assert [s["correct"] for s in result["samples"]] == [True, True, False, True]  # the first draw's samples
    assert result["format"]["n"] == 12 and result["thinking"]["n"] == 12  # health counts every draw
    assert primary_with_errors(result)["heldout/accuracy"].se == pytest.approx(sd / 2)
    one = score(rows, draws[:1])  # one draw: the binomial se over problems, no k figures
    assert one["accuracy"] == 0.75 and "pass_at_k" not in one and "right_of_k" not in one["samples"][0]
    assert primary_with_errors(one)["heldout/accuracy"].se == pytest.approx((0.75 * 0.25 / 4) ** 0.5)


def test_a_budget_larger_than_the_generation_limit_is_an_error():
    with pytest.raises(ValidationError, match=r"budget = 512 is not below evaluation.benchmarks.max_gen_toks = 256"):
        EvalConfig(heldout_problems=0, thinking={"budget": 512},
                   benchmarks=BenchmarkConfig(tasks=[TaskSpec(task="gsm8k")]))
    with pytest.raises(ValidationError, match=r"not below max_gen_toks of task 'bbh' = 64"):
        EvalConfig(heldout_problems=0, thinking={"budget": 100}, benchmarks=BenchmarkConfig(
            max_gen_toks=1024, tasks=[TaskSpec(task="gsm8k"), TaskSpec(task="bbh", max_gen_toks=64)]))
    with pytest.raises(ValidationError, match=r"not below evaluation.max_new_tokens = 96"):
        EvalConfig(thinking={"budget": 96})
    EvalConfig(thinking={"budget": 8})  # fits the probe's 96 and the suite's 256


def test_other_bad_decoding_settings_fail_with_the_field():
    with pytest.raises(ValidationError, match="decoding: greedy takes no sampling settings, got temperature=0.7"):
        TaskSpec(task="ifeval", decoding="greedy", temperature=0.7)
    with pytest.raises(ValidationError, match=r"pass_at_k \[16\] needs 1 <= k <= repeats \(8\)"):
        TaskSpec(task="gsm8k", repeats=8, pass_at_k=[1, 16])
    with pytest.raises(ValidationError):
        PromptConfig(system_prompt="")  # lm-eval drops it and each template would insert its own


def test_decoding_presets_and_defaults():
    assert TaskSpec(task="gsm8k").sampling_config().sampling() == {"do_sample": True, "temperature": 0.6,
                                                                    "top_p": 0.95}
    assert TaskSpec(task="ifeval", decoding="greedy").sampling_config().sampling() == {"do_sample": False}
    assert TaskSpec(task="x", top_k=20, top_p=1.0).sampling_config().sampling() == {
        "do_sample": True, "temperature": 0.6, "top_k": 20}
    assert TaskSpec(task="x", repeats=8).ks() == ([1, 8], [8])
    assert TaskSpec(task="x").ks() == ([], [])


def test_new_settings_change_the_evaluation_cache_key():
    from tinyreason.outputs import digest

    base = digest(EvalConfig().model_dump())
    changed = [EvalConfig(thinking={"budget": 8}), EvalConfig(thinking={"mode": "off"}),
               EvalConfig(decoding={"decoding": "greedy"}), EvalConfig(prompt={"chat_template": "platform"}),
               EvalConfig(prompt={"system_prompt": "Be exact."}),
               EvalConfig(benchmarks={"tasks": [{"task": "x", "repeats": 2}]}), EvalConfig(heldout_samples=4)]
    assert base not in {digest(c.model_dump()) for c in changed}
    # added after evaluations were cached: at its default the key is the one made before it existed
    assert "heldout_samples" not in EvalConfig().model_dump() and digest(EvalConfig(heldout_samples=1).model_dump()) == base


def test_vllm_backend_without_vllm_installed_says_what_to_do():
    pytest.importorskip("torch")
    if __import__("importlib").util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    with pytest.raises(harness.EvalError, match="backend = 'vllm' but vllm is not installed; `pip install vllm`"):
        harness.backend_for(BenchmarkConfig(backend="vllm"))
    assert harness.backend_for(BenchmarkConfig(backend="auto")) == "hf"


# ------------------------------------------------------------------ pass@k and maj@k


def test_k_scores_from_rows_match_a_count_by_hand():
    rows = [{"repeat_scores": [1.0, 0.0, 0.0, 1.0], "repeat_votes": ["=3", "=4", "=4", "=3"], "reference": "=3"},
            {"repeat_scores": [0.0, 0.0, 0.0, 0.0], "repeat_votes": ["=1", None, "=1", "=2"], "reference": "=5"},
            {"repeat_scores": [1.0, 1.0, 1.0, 0.0], "repeat_votes": ["=7", "=7", "=7", None], "reference": "=7"}]
    got = samples.k_scores(rows, [1, 2, 4], [4])
    assert got["pass@1"]["value"] == pytest.approx((2 / 4 + 0 + 3 / 4) / 3)
    assert got["pass@2"]["value"] == pytest.approx((pass_at_k(4, 2, 2) + 0 + 1) / 3)
    assert got["pass@4"]["value"] == pytest.approx(2 / 3)
    # problem 1: a tie between =3 and =4 goes to the first seen (=3, right); 2: =1 (wrong); 3: =7 (right)
    assert got["maj@4"]["value"] == pytest.approx(2 / 3)
    assert got["maj@4"]["se"] == maj_at_k_over_items([r["repeat_votes"] for r in rows], ["=3", "=5", "=7"]).se
    assert got["n"] == 4 and got["problems"] == 3


def test_k_scores_skip_what_does_not_apply():
    rows = [{"repeat_scores": [0.5, 1.0], "repeat_votes": ["a", "b"], "reference": None}]
    got = samples.k_scores(rows, [1], [2])
    assert "pass@1" not in got and "maj@2" not in got
    assert got["pass@k_skipped"] and got["maj@k_skipped"]


# ------------------------------------------------------------------ the report's sections


def test_report_section_shows_thinking_on_vs_off_per_reasoning_stage_and_the_conditions():
    from tinyreason.eval.reasoning_report import reasoning_results, reasoning_section

    counts = {"n": 10, "no_answer": 2, "unclosed": 2}
    stage = {"accuracy": 0.4, "thinking": counts, "think_off": {"accuracy": 0.1, "thinking": dict(counts, no_answer=0)},
             "benchmarks": {"primary": {"gsm8k": 0.3, "arc": 0.5}, "thinking": {"gsm8k": counts},
                            "sampling": {"gsm8k": {"n": 8, "pass@1": {"value": 0.3, "se": 0.05, "n": 10},
                                                   "maj@8": {"value": 0.4, "se": 0.15, "n": 10}}},
                            "think_off": {"primary": {"gsm8k": 0.2}, "thinking": {"gsm8k": dict(counts, no_answer=0)}}}}
    evals = {"base": {"accuracy": 0.0, "benchmarks": {"primary": {"gsm8k": 0.1, "arc": 0.4}}}, "reasoning": stage}
    data = reasoning_results(evals)
    assert list(data["thinking_on_off"]) == ["reasoning"]  # the base does not think: no row
    assert data["thinking_on_off"]["reasoning"]["gsm8k"] == {"on": 0.3, "off": 0.2, "no_answer_on": 0.2,
                                                            "no_answer_off": 0.0}
    ev = EvalConfig(benchmarks={"tasks": [{"task": "gsm8k", "repeats": 8}, {"task": "ifeval", "decoding": "greedy"}]})
    md = "\n".join(reasoning_section(evals, ev))
    assert "| reasoning | heldout/accuracy | 0.400 | 0.100 | +0.300 | 20.0% | 0.0% |" in md
    assert "| reasoning | gsm8k | 0.300 | 0.200 | +0.100 | 20.0% | 0.0% |" in md
    assert "| reasoning | gsm8k | 8 | 0.300 ± 0.050 | 0.400 ± 0.150 |" in md
    assert "the system prompt it trained with" in md and "its own saved chat template" in md
    md = "\n".join(reasoning_section(evals, ev.model_copy(update={"prompt": PromptConfig(
        system_prompt="Be exact.", chat_template="platform")})))
    assert 'system prompt "Be exact."' in md and "tinyreason's ChatML template" in md
    assert "- gsm8k: temperature 0.6, top-p 0.95, seed 0, 8 samples per problem" in md
    assert "- ifeval: greedy" in md
