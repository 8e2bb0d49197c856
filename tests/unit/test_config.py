"""Every file in configs/ validates; bad configs fail before any work, naming the field."""

import json
from pathlib import Path

import pytest

from tinyreason.config.base import CONFIG_DIR, ConfigError
from tinyreason.config.experiment import ExperimentConfig
from tinyreason.config.loading import apply_override, load_blend, load_config, validate_config
from tinyreason.config.sections import BlendConfig

EXPERIMENTS = sorted(p for p in CONFIG_DIR.glob("*.yaml"))
BLENDS = sorted((CONFIG_DIR / "blends").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_experiment_config_validates(path):
    cfg = load_config(path)
    assert isinstance(cfg, ExperimentConfig) and cfg.stages


@pytest.mark.parametrize("path", BLENDS, ids=lambda p: p.name)
def test_every_blend_config_validates(path):
    assert isinstance(load_blend(str(path)), BlendConfig)


def test_default_is_the_five_stage_curriculum_ending_in_grpo():
    cfg = load_config()
    assert [s.kind for s in cfg.stages] == ["pretrain", "sft", "reasoning_sft", "dpo", "grpo"]
    dpo = cfg.stage("dpo")
    assert dpo.trainer.loss_type == ["apo_zero", "sft"] and dpo.trainer.beta > 0  # apo_zero with the NLL term
    grpo = cfg.stage("grpo")
    assert [r["name"] for r in grpo.rewards] == ["correctness", "think_format"]


def _raw(**stage_overrides):
    stage = {"name": "s", "kind": "sft", "data": {"blend": {"sources": [{"synthetic": "chat", "entries": 10}]}}}
    stage.update(stage_overrides)
    return {"model": {"preset": "micro"}, "stages": [stage]}


@pytest.mark.parametrize(
    "stage, fragments",
    [
        ({"kind": "ppo"}, ["stages.0.kind", "'ppo'", "pretrain", "dpo", "grpo"]),
        ({"trainer": {"learning_rate": -1e-4}}, ["stages.0.trainer.learning_rate", "-0.0001", "greater than 0"]),
        ({"data": {"blend": "blends/no-such-blend.yaml"}}, ["blend", "no-such-blend", "not found"]),
        ({"kind": "dpo"}, ["stages.0.data.blend.sources.0.synthetic", "'chat'", "dpo", "'preference'"]),
        ({"trainer": {"learning_rat": 1e-3}}, ["trainer.learning_rat", "did you mean 'learning_rate'"]),
        ({"trainer": {"beta": 0.1}}, ["beta", "preference or RL setting"]),
        ({"trainer": {"lr_scheduler_type": "cosine_min"}}, ["lr_scheduler_type", "cosine_with_min_lr"]),
        ({"scaling": {"num_workers": 0}}, ["stages.0.scaling.num_workers", "greater than or equal to 1"]),
        ({"colour": "blue"}, ["stages.0.colour", "Extra inputs are not permitted"]),
    ],
    ids=["unknown-kind", "negative-lr", "missing-blend", "dpo-given-chat", "typo", "beta-in-sft",
         "bad-scheduler", "zero-workers", "unknown-key"],
)
def test_bad_stage_config_names_the_field(stage, fragments):
    with pytest.raises(ConfigError) as err:
        validate_config(_raw(**stage))
    for fragment in fragments:
        assert fragment in str(err.value)


def test_duplicate_stage_names_rejected():
    raw = _raw()
    raw["stages"].append(dict(raw["stages"][0]))
    with pytest.raises(ConfigError, match="repeated: s"):
        validate_config(raw)


def test_overrides_by_index_and_by_stage_name():
    raw = {"stages": [{"name": "sft", "trainer": {}}, {"name": "dpo", "trainer": {}}]}
    apply_override(raw, "stages.dpo.trainer.beta=0.25")
    apply_override(raw, "stages.0.trainer.learning_rate=1e-4")
    apply_override(raw, "storage.path=/tmp/x")
    assert raw["stages"][1]["trainer"]["beta"] == 0.25
    assert raw["stages"][0]["trainer"]["learning_rate"] == 1e-4
    assert raw["storage"]["path"] == "/tmp/x"
    with pytest.raises(ConfigError, match="no item 'ppo'"):
        apply_override(raw, "stages.ppo.trainer.beta=1")
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_override(raw, "stages.dpo.trainer.beta")


def test_load_config_applies_overrides_then_validates():
    cfg = load_config(None, ["stages.dpo.trainer.beta=0.3", "model.preset=micro"])
    assert cfg.stage("dpo").trainer.beta == 0.3 and cfg.model.preset == "micro"
    with pytest.raises(ConfigError, match="stages.1.trainer.learning_rate"):
        load_config(None, ["stages.sft.trainer.learning_rate=-1"])


def test_stages_picks_a_subset_in_the_order_given_after_the_overrides():
    cfg = load_config("configs/micro.yaml", ["stages.dpo.trainer.beta=0.3"], stages=["pretrain", "sft"])
    assert [s.name for s in cfg.stages] == ["pretrain", "sft"]  # an override of a stage left out is fine
    cfg = load_config("configs/micro.yaml", ["stages.dpo.trainer.beta=0.3"], stages=["dpo"])
    assert [s.name for s in cfg.stages] == ["dpo"] and cfg.stages[0].trainer.beta == 0.3
    with pytest.raises(ConfigError, match=r"--stages pretrain,dpoo names stage\(s\) \['dpoo'\] that "
                                          r"configs/micro.yaml does not have; its stages are: pretrain, sft, "
                                          r"reasoning, dpo, grpo"):
        load_config("configs/micro.yaml", stages=["pretrain", "dpoo"])
    with pytest.raises(ConfigError, match="names no stage; name at least one"):
        load_config("configs/micro.yaml", stages=[])


def test_malformed_yaml_and_missing_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [\n  - name: x\n    kind: sft\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_trl_names_pass_through_unchanged():
    raw = _raw(trainer={"loss_type": "dft", "neftune_noise_alpha": 0.01, "lr_scheduler_type": "cosine_with_min_lr",
                        "lr_scheduler_kwargs": {"min_lr_rate": 0.1}, "warmup_steps": 0.1,
                        "gradient_checkpointing": True, "assistant_only_loss": True})
    trl = validate_config(raw).stages[0].trainer.to_trl()
    assert trl["loss_type"] == "dft" and trl["assistant_only_loss"] is True and trl["warmup_steps"] == 0.1
    assert trl["gradient_checkpointing"] is True and "activation_checkpointing" not in trl  # transformers maps it


def test_checkpointing_is_off_unless_asked_and_one_name_only(tmp_path: Path):
    from trl import GRPOConfig, SFTConfig  # TRL's own default for the old name is True

    for asked, on in (({}, False), ({"activation_checkpointing": True}, True), ({"gradient_checkpointing": True}, True)):
        trl = validate_config(_raw(trainer=asked)).stages[0].trainer.to_trl()
        for cls in (SFTConfig, GRPOConfig):
            args = cls(output_dir=str(tmp_path), use_cpu=True, bf16=False, **trl)
            assert args.activation_checkpointing is on, (asked, cls.__name__)
    with pytest.raises(ConfigError, match="deprecated name for trainer.activation_checkpointing=False; keep one"):
        validate_config(_raw(trainer={"gradient_checkpointing": True, "activation_checkpointing": False}))


@pytest.mark.parametrize("attn, asked, joined", [
    ("sdpa", None, False), ("eager", None, False), ("flash_attention_2", None, True), ("flash_attention_3", None, True),
    ("kernels-community/flash-attn3", None, True), ("sdpa_varlen", None, True),  # hub and torch varlen kernels
    ("flash_attention_2", False, False), ("sdpa", True, True),  # asked for: as asked
])
def test_padding_free_follows_the_attention_kernel_unless_set(attn, asked, joined):
    from tinyreason.outputs import StageOutput
    from tinyreason.storage import Storage
    from tinyreason.train.job import StageJob
    from tinyreason.train.shards import padding_free

    stage = validate_config(_raw(data={"blend": {"sources": [{"synthetic": "chat"}]}, "padding_free": asked})).stages[0]
    out = StageOutput(Storage("/tmp/tinyreason-unused"), "stages/00-x")
    assert padding_free(StageJob(stage, "parent", "tok", out, attn_implementation=attn)) is joined


def test_credentials_in_a_storage_uri_are_redacted_in_the_dumped_config():
    from tinyreason.config.loading import dump_config

    cfg = load_config("configs/micro.yaml", ["storage.path=s3://AKIAFAKE:s3cr3tFAKE@bucket/runs?region=us-east-1"])
    dumped = json.dumps(dump_config(cfg))
    assert "s3cr3tFAKE" not in dumped and "AKIAFAKE" not in dumped and "s3://" in dumped
