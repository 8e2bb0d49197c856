"""Decontamination's pure parts: normalization, n-grams, the eval index, matching, eval loaders."""

import json
from pathlib import Path

import pytest

from tinyreason.config.loading import load_config
from tinyreason.data import decontam as D
from tinyreason.data import synthetic
from tinyreason.data.sources import DataError

F = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
GSM = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
       "How many clips did Natalia sell altogether in April and May?")


def chat(*contents):
    roles = ["user", "assistant"] * len(contents)
    return {"messages": [{"role": r, "content": c} for r, c in zip(roles, contents)]}


def test_words_ignore_case_punctuation_and_unicode_width():
    assert D.words("Tom's 5 APPLES, ok?") == ["tom", "s", "5", "apples", "ok", "?"]
    assert D.words("Ｔｏｍ  ｈａｓ\n5！") == ["tom", "has", "5", "!"]  # NFKC folds full-width forms


def test_item_ngrams_long_short_and_tiny_items():
    assert len(D.item_ngrams(GSM, 13)) == len(D.words(GSM)) - 12
    assert D.item_ngrams("Which is smaller, 39 or 52?", 8) == {"which is smaller 39 or 52 ?"}
    assert D.item_ngrams("Yes or no?", 8) == set()  # 3 words: would match everything


def test_index_records_sizes_lengths_and_anchors():
    idx = D.build_index([GSM, "Which is smaller, 39 or 52?", "Yes?"], n=13)
    assert idx.sizes == (len(D.words(GSM)) - 12, 1, 0)
    assert idx.lengths == (7, 13) and "natalia" in idx.anchors and "which" in idx.anchors


def test_match_finds_an_item_quoted_inside_a_longer_row():
    idx = D.build_index(["unrelated item about the moon and its many phases over a month", GSM], n=13)
    row = chat("Here is homework. " + GSM + " Please show steps.", "48 + 24 = 72.")
    assert D.match(D.row_texts(row), idx, 0.5) == 1


def test_match_needs_the_threshold_share_of_one_item():
    idx = D.build_index([GSM], n=8)
    half = " ".join(GSM.split()[:14])  # the first sentence only: about 7 of the item's 23 8-grams
    assert D.match([half], idx, 0.5) == -1
    assert D.match([half], idx, 0.2) == 0


def test_no_ngram_spans_two_messages():
    idx = D.build_index(["one two three four five six seven eight"], n=8)
    assert D.match(D.row_texts(chat("one two three four", "five six seven eight")), idx, 0.5) == -1
    assert D.match(D.row_texts({"text": "zero one two three four five six seven eight nine"}), idx, 1.0) == 0


def test_preference_rows_are_checked_on_prompt_and_both_answers():
    idx = D.build_index([GSM], n=13)
    row = {"prompt": [{"role": "user", "content": "Solve it."}], "chosen": [{"role": "assistant", "content": GSM}],
           "rejected": [{"role": "assistant", "content": "No."}]}
    assert D.match(D.row_texts(row), idx, 0.5) == 0


def test_synthetic_heldout_problems_match_only_when_planted():
    # The synthetic world never emits a held-out problem: no training row may match one,
    # and a planted held-out question must be caught at the n=8, threshold=1.0 setting.
    heldout = D.eval_texts_from_synthetic(100)
    idx = D.build_index(heldout, D.SYNTHETIC_N)
    for make in (synthetic.reasoning_rows, synthetic.chat_rows, synthetic.pretrain_rows, synthetic.preference_rows,
                 synthetic.prompt_rows):
        rows = make(2000, 0)
        assert sum(D.match(D.row_texts(r), idx, D.SYNTHETIC_THRESHOLD) >= 0 for r in rows) == 0, make.__name__
    planted = chat(heldout[42], "The answer is 3.")
    assert D.match(D.row_texts(planted), idx, D.SYNTHETIC_THRESHOLD) == 42


def test_eval_texts_from_synthetic_are_the_scored_questions():
    rows = synthetic.eval_rows(5, 20261122) + synthetic.eval_rows(5, 20261122, "heldout")
    assert D.eval_texts_from_synthetic(5) == [r["question"] for r in rows]  # both phrasings are scored


def test_eval_texts_from_files_reads_questions_and_long_answers(tmp_path):
    assert len(D.eval_texts_from_files(str(F / "benchmark.jsonl"))) == 4
    f = tmp_path / "gsm.jsonl"
    f.write_text(json.dumps({"question": GSM, "answer": "In May she sold 48 / 2 = 24 clips, so 72."}) + "\n"
                 + json.dumps({"text": "A passage to read closely."}) + "\n")
    assert D.eval_texts_from_files(str(f)) == [GSM, "In May she sold 48 / 2 = 24 clips, so 72.",
                                               "A passage to read closely."]


def test_eval_file_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"latin1\.jsonl is not UTF-8"):
        D.eval_texts_from_files(str(F / "latin1.jsonl"))
    bad = tmp_path / "nofield.jsonl"
    bad.write_text(json.dumps({"query": "x"}) + "\n")
    with pytest.raises(DataError, match=r"nofield\.jsonl: no item has any of the fields question"):
        D.eval_texts_from_files(str(bad))
    with pytest.raises(DataError, match=r"\.parquet: eval sets are read from \.jsonl"):
        D.eval_texts_from_files(str(F / "reasoning.parquet"))


def test_decontaminator_key_follows_content_and_settings_not_formatting():
    a = D.Decontaminator([GSM, "Which is smaller, 39 or 52?"])
    b = D.Decontaminator(["which is  smaller 39 or 52 ?", GSM.upper()])
    assert a.key == b.key
    assert D.Decontaminator([GSM], n=8).key != D.Decontaminator([GSM]).key
    assert D.Decontaminator([GSM], threshold=0.8).key != D.Decontaminator([GSM]).key
    assert a.describe()["items"] == 2 and a.describe()["n"] == 13


def test_decontaminator_rejects_unusable_settings():
    with pytest.raises(ValueError, match="none of its 2 items has 5\\+ words"):
        D.Decontaminator(["Yes", "No"])
    with pytest.raises(ValueError, match="0 < threshold <= 1"):
        D.Decontaminator([GSM], threshold=0.0)
    with pytest.raises(ValueError, match="list of strings"):
        D.Decontaminator(GSM)


def test_decontaminator_for_the_default_config_covers_every_eval_set():
    from tinyreason.eval.sets import decontaminator_for
    from tinyreason.eval.tasks import N_HELDOUT

    cfg = load_config("configs/default.yaml")
    suite = decontaminator_for(cfg.evaluation)
    [d] = suite.sets
    assert (d.n, d.threshold) == (D.SYNTHETIC_N, D.SYNTHETIC_THRESHOLD) and not suite.unreadable
    # the probe (100) and the built-in lm-eval tasks (200) share one held-out stream,
    # scored in the training templates and in the held-out template family
    assert len(d.texts) == 2 * max(cfg.evaluation.heldout_problems, N_HELDOUT)
    cfg.evaluation.decontamination.files = [str(F / "benchmark.jsonl")]
    with_files = decontaminator_for(cfg.evaluation)
    # each set keeps its own n-gram settings: 8-grams for synthetic problems, 13 for benchmark items
    assert [(s.n, len(s.texts)) for s in with_files.sets] == [(D.SYNTHETIC_N, len(d.texts)), (D.DEFAULT_N, 4)]
    assert with_files.sets[1].name == f"file {F / 'benchmark.jsonl'}" and with_files.key != suite.key
    cfg.evaluation.decontamination.enabled = False
    assert decontaminator_for(cfg.evaluation) is None
