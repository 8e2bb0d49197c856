"""The registry is the only list of stage kinds: the config, the row schemas, the blend
builder's job and the launcher accept exactly the kinds it holds."""

import subprocess
import sys

import pytest

from tinyreason.config.base import ConfigError, REPO_ROOT
from tinyreason.config.experiment import StageConfig
from tinyreason.config.loading import validate_config
from tinyreason.data import schema
from tinyreason.data.sources import SYNTHETIC_SCHEMA
from tinyreason.train import registry

KINDS = registry.names()


# the smallest valid section of each section a kind needs (peft is optional on every kind that takes it)
SECTIONS = {"rewards": [{"name": "correctness"}], "teacher": {"model": "base"}}


def _stage(kind: str, source: str) -> dict:
    stage = {"name": kind, "kind": kind, "data": {"blend": {"sources": [{"synthetic": source}]}}}
    if kind in registry.names():
        stage.update({s: SECTIONS[s] for s in registry.get(kind).sections if s in SECTIONS})
    return stage


def _source_for(kind: str) -> str:
    want = schema.family(registry.get(kind).schema)
    return next(g for g, s in SYNTHETIC_SCHEMA.items() if schema.family(s) == want)


def test_the_registry_holds_the_built_in_kinds_each_from_its_own_module():
    assert {"pretrain", "sft", "reasoning_sft", "dpo"} <= set(KINDS)
    for name in KINDS:
        kind = registry.get(name)
        assert kind.name == name and kind.schema in schema.SCHEMAS
        assert callable(kind.train_loop) and callable(kind.tokenize_steps) and callable(kind.prepare_tokenizer)
        assert kind.trl_config().__name__.endswith("Config")  # TRL's own config class names its settings
        assert "loss" in [c.key for c in kind.curves]  # every kind's report draws its loss


@pytest.mark.parametrize("kind", KINDS)
def test_every_config_model_accepts_every_registered_kind(kind):
    cfg = validate_config({"stages": [_stage(kind, _source_for(kind))], "model": {"preset": "micro"},
                           "tokenizer": {"path": None}})
    assert cfg.stages[0].kind == kind
    assert StageConfig.model_validate(_stage(kind, _source_for(kind))).kind == kind


def test_a_kind_the_registry_does_not_hold_is_refused_everywhere():
    with pytest.raises(ConfigError, match=r"stages\.0\.kind.*unknown stage kind 'ppo'; the registered kinds are"):
        validate_config({"stages": [_stage("ppo", "chat")]})
    with pytest.raises(ValueError, match="unknown stage kind 'ppo'"):
        registry.get("ppo")
    build = subprocess.run([sys.executable, "jobs/build_blends.py", "--blend", "configs/blends/trlm-stage-1.yaml",
                            "--kind", "ppo"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert build.returncode == 1 and "unknown stage kind 'ppo'" in build.stderr + build.stdout


def test_registering_twice_is_refused_and_unregister_forgets():
    kind = registry.get("sft")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(kind)
    copy = registry.register(type(kind)(**{**kind.__dict__, "name": "sft_copy"}))
    assert "sft_copy" in registry.names() and registry.get("sft_copy") is copy
    registry.unregister("sft_copy")
    assert "sft_copy" not in registry.names()
