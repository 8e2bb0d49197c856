"""GRPO's share of prompt groups without reward spread (no gradient), measured as the stage
logs it: TRL's own `frac_reward_zero_std` calls a group of equal weighted rewards spread when
float32 rounding leaves its standard deviation at 1.6e-8, so under the default rewards
(correctness + 0.2 x think_format) it read 0% for every step of the demo's GRPO stage and the
stage's no-signal warning never fired. train/compat.py replaces it by grpo.groups_without_spread."""

import math

import pytest
import torch

from tinyreason.train import compat
from tinyreason.train.grpo import groups_without_spread, review

W = [1.0, 0.2]  # correctness, think_format: the embedded default's weights
NAN = math.nan


def test_a_group_of_equal_weighted_rewards_has_no_spread():
    wrong_but_well_formed = [[0.0, 1.0]] * 8
    one_right = [[1.0, 1.0]] + [[0.0, 1.0]] * 7
    assert groups_without_spread(wrong_but_well_formed, W, 8) == 1.0
    assert groups_without_spread(one_right, W, 8) == 0.0
    assert groups_without_spread(wrong_but_well_formed + one_right, W, 8) == 0.5
    assert groups_without_spread([[0.0, 1.0]] * 3 + [[0.0, 0.0]], W, 4) == 0.0  # one malformed: format spread
    # a completion no reward scored is left out of its group, as TRL leaves it out of the baseline
    assert groups_without_spread([[NAN, NAN]] + [[1.0, 1.0]] * 3, W, 4) == 1.0
    assert groups_without_spread([[NAN, NAN]] * 4, W, 4) == 1.0
    assert groups_without_spread([[1.0, NAN], [1.0, 1.0]], W, 2) == 0.0  # 1.0 against 1.2
    assert groups_without_spread([], W, 8) == 0.0


def test_trls_own_measure_misses_it():
    """Why the adapter exists. When this fails, TRL counts such groups itself and the adapter can go."""
    from trl.trainer.utils import nanstd

    rewards = (torch.tensor([[0.0, 1.0]] * 8) * torch.tensor(W)).nansum(dim=1)  # groups of 8, as the default's
    std = nanstd(rewards.view(-1, 8), dim=1)  # (groups of 4 round to exactly 0)
    assert 0 < std.item() < 1e-7 and not torch.isclose(std, torch.zeros_like(std)).item()


def test_the_stage_warns_once_most_groups_have_no_spread():
    metrics = [{"frac_reward_zero_std": v} for v in (0.0, 0.5, 1.0, 0.9)]
    assert "95% of its prompt groups had rewards all equal" in review({}, metrics)[0]
    assert review({}, [{"frac_reward_zero_std": 0.0}] * 4) == []


def _grpo_trainer(tok_dir, out, seed=0):
    from datasets import Dataset
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id))

    def wrong(completions, **_):
        return [0.0] * len(completions)

    def well_formed(completions, **_):
        return [1.0] * len(completions)

    args = GRPOConfig(output_dir=str(out), max_steps=2, per_device_train_batch_size=8, num_generations=8,
                      max_completion_length=4, learning_rate=1e-4, logging_steps=1, save_strategy="no", report_to=[],
                      use_cpu=True, bf16=False, disable_tqdm=True, reward_weights=W, seed=seed)
    rows = Dataset.from_list([{"prompt": f"Tom has {n} apples."} for n in range(4)])
    return GRPOTrainer(model=model, reward_funcs=[wrong, well_formed], args=args, train_dataset=rows,
                       processing_class=tok)


def test_a_real_grpo_trainer_logs_every_group_without_spread_once_adapted(micro_tokenizer, tmp_path):
    plain = _grpo_trainer(micro_tokenizer, tmp_path / "plain")
    plain.train()
    assert [h["frac_reward_zero_std"] for h in plain.state.log_history if "reward" in h] == [0.0, 0.0]  # TRL's

    adapted = _grpo_trainer(micro_tokenizer, tmp_path / "adapted")
    compat.grpo_logs_groups_without_spread(adapted, groups_without_spread)
    adapted.train()
    logs = [h for h in adapted.state.log_history if "reward" in h]
    assert [h["frac_reward_zero_std"] for h in logs] == [1.0, 1.0]
    assert all(h["reward"] == pytest.approx(0.2) for h in logs)
