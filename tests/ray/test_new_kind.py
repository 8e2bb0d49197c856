"""A stage kind added by this test module alone, through the registry, runs through a micro
curriculum: the config accepts it, the blend builder makes its rows, the launcher trains it.

The kind, `chat_lm`, trains on chat rows with the loss on every token (prompts included),
a language-modelling warm-up some recipes use before assistant-only SFT. It brings its own
tokenize step and config rule; its worker loop is sft's (share code through functions).

Under `make test` this module runs last on the worker that is not running the Ray tier, with a
local Ray of its own (tests/conftest.py: SECOND_RAY): it shares nothing with the Ray tier."""

import pytest
import yaml

from tinyreason.config.base import CONFIG_DIR, ConfigError
from tinyreason.config.loading import load_config
from tinyreason.curriculum import run_curriculum
from tinyreason.data import tokenize as T
from tinyreason.model.tokenizer import cached_tokenizer
from tinyreason.train import registry, sft
from tinyreason.train.kind import LOSS, StageKind


def _every_token(batch, tokenizer_dir: str, max_length: int):
    tok = cached_tokenizer(tokenizer_dir)
    rows = []
    for row in T.rows_of(batch):
        ids = tok.apply_chat_template(row["messages"], tokenize=True, return_dict=True)["input_ids"][:max_length]
        rows.append({"input_ids": list(ids), "labels": list(ids)})
    return T.batch_of(rows, ["input_ids", "labels"])


def tokenize_steps(tokenizer_dir, stage):
    from functools import partial

    return [T.Step(partial(_every_token, tokenizer_dir=tokenizer_dir, max_length=stage.data.max_length), 256),
            T.Step(partial(T.pack_batch, max_length=stage.data.max_length), 2048)]


def check(stage):
    if stage.trainer.loss_type not in (None, "nll"):
        raise ValueError("a chat_lm stage trains every token with the plain nll loss; remove trainer.loss_type")


CHAT_LM = StageKind(name="chat_lm", summary="language modelling on whole chat rows", schema="chat",
                    trl_config=sft.trl_config, train_loop=sft.train_loop_per_worker, tokenize_steps=tokenize_steps,
                    prepare_tokenizer=sft.prepare_tokenizer, check=check, packing="chat", curves=(LOSS,))


@pytest.fixture
def chat_lm():
    registry.register(CHAT_LM)
    yield CHAT_LM
    registry.unregister(CHAT_LM.name)


def _config(tmp_path, **trainer):
    raw = yaml.safe_load((CONFIG_DIR / "micro.yaml").read_text())
    chat = {"name": "warmup", "kind": "chat_lm",
            "data": {"blend": {"sources": [{"synthetic": "chat", "entries": 200}]}, "max_length": 128},
            "trainer": {"learning_rate": 1e-3, "logging_steps": 2, **trainer}, "scaling": {"num_workers": 2}}
    raw.update(name="new-kind", stages=[raw["stages"][0], chat], evaluation={"after_each_stage": False},
               storage={"path": str(tmp_path / "runs")}, tracking={"wandb": {"enabled": False}})
    path = tmp_path / "new-kind.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_kind_registered_by_a_test_module_trains_in_a_curriculum(ray_local, chat_lm, tmp_path):
    with pytest.raises(ConfigError, match="a chat_lm stage trains every token"):  # its own rule, at config time
        load_config(_config(tmp_path, loss_type="dft"))
    result = run_curriculum(load_config(_config(tmp_path)))
    stage = result.stages[1]
    assert stage.manifest["kind"] == "chat_lm" and not stage.cached
    s = stage.manifest["summary"]
    assert s["steps"] >= 5 and s["loss_last"] < s["loss_first"]
    assert (stage.output.model_dir / "model.safetensors").exists()


def test_an_unregistered_kind_is_refused_with_the_registered_ones_listed(tmp_path):
    with pytest.raises(ConfigError, match="unknown stage kind 'chat_lm'; the registered kinds are: pretrain, sft"):
        load_config(_config(tmp_path))
