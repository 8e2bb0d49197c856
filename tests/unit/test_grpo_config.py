"""A grpo stage's config is checked before Ray starts: its rewards import and take TRL's
arguments, its generation batch holds whole groups, and its settings are GRPOConfig's."""

import pytest

from tinyreason.config.base import ConfigError
from tinyreason.config.loading import validate_config

PROMPTS = {"blend": {"sources": [{"synthetic": "prompts", "entries": 16}]}}


def _grpo(**stage) -> dict:
    base = {"name": "grpo", "kind": "grpo", "data": PROMPTS, "rewards": [{"name": "correctness"}],
            "trainer": {"per_device_train_batch_size": 8, "num_generations": 4}}
    return {"stages": [{**base, **stage}]}


def _trainer(**kw) -> dict:
    return {"per_device_train_batch_size": 8, "num_generations": 4, **kw}


def test_a_good_grpo_stage_validates_with_trl_names():
    cfg = validate_config(_grpo(trainer=_trainer(beta=0.04, temperature=0.9, max_completion_length=64,
                                                 loss_type="dapo", epsilon=0.2, scale_rewards="group")))
    stage = cfg.stages[0]
    assert stage.kind == "grpo" and stage.trainer.beta == 0.04 and stage.rewards == [{"name": "correctness"}]


@pytest.mark.parametrize("stage, fragments", [
    ({"rewards": None}, ["a grpo stage needs rewards", "{name: correctness}"]),
    ({"rewards": [{"path": "no_such_module:reward"}]}, ["no_such_module", "import"]),
    ({"rewards": [{"path": "os.path:join"}]}, ["os.path:join", "completions"]),
    ({"rewards": [{"name": "correctnes"}]}, ["correctnes", "not a built-in"]),
    ({"trainer": _trainer(num_generations=3)},
     ["num_generations=3 does not divide the generation batch of 8", "per_device_train_batch_size: 3"]),
    ({"trainer": _trainer(num_generations=1)}, ["at least 2 completions"]),
    ({"trainer": _trainer(num_generation=8)}, ["trainer.num_generation is not a TRL grpo argument",
                                               "did you mean 'num_generations'"]),
    ({"trainer": _trainer(use_vllm=True)}, ["use_vllm generates on GPUs"]),
], ids=["no-rewards", "reward-not-importable", "reward-wrong-signature", "reward-unknown", "groups-split",
        "one-generation", "typo", "vllm-on-cpu"])
def test_bad_grpo_stage_names_the_fix(stage, fragments):
    with pytest.raises(ConfigError) as err:
        validate_config(_grpo(**stage))
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)


def test_rewards_on_another_kind_are_refused():
    raw = {"stages": [{"name": "sft", "kind": "sft", "data": {"blend": {"sources": [{"synthetic": "chat"}]}},
                       "rewards": [{"name": "correctness"}]}]}
    with pytest.raises(ConfigError, match="rewards applies to grpo stages, not to a sft stage; remove it"):
        validate_config(raw)


def test_a_prompt_source_feeds_only_a_prompt_stage():
    raw = {"stages": [{"name": "dpo", "kind": "dpo", "data": PROMPTS}]}
    with pytest.raises(ConfigError, match="trains on preference rows, but this source makes prompt rows"):
        validate_config(raw)


def test_prompts_longer_than_max_prompt_length_are_dropped_counting_their_tokens(tmp_path):
    from tinyreason.data import synthetic
    from tinyreason.model.tokenizer import prepare_chat_tokenizer, train_bpe
    from tinyreason.train.grpo import _fitting_prompts

    tok = prepare_chat_tokenizer(train_bpe((r["text"] for r in synthetic.pretrain_rows(200, 0)), 300, tmp_path))
    tok.save_pretrained(tmp_path)
    rows = synthetic.prompt_rows(40, 0)
    lengths = [len(tok.apply_chat_template(r["prompt"], add_generation_prompt=True, return_dict=True)["input_ids"])
               for r in rows]
    limit = sorted(lengths)[len(lengths) // 2]  # about half the prompts are longer
    batch = {"prompt": [r["prompt"] for r in rows], "answer": [r["answer"] for r in rows]}
    kept = _fitting_prompts(batch, str(tmp_path), limit)
    assert kept["answer"] == [r["answer"] for r, n in zip(rows, lengths) if n <= limit]
    assert 0 < len(kept["answer"]) < len(rows)
    assert len(_fitting_prompts(batch, str(tmp_path), None)["answer"]) == len(rows)
