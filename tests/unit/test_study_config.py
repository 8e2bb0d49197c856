"""A study's arms are whole curricula, each validated before anything trains."""

import pytest
import yaml

from tinyreason.config.base import ConfigError
from tinyreason.config.studies import load_study


def _study(tmp_path, **over) -> str:
    raw = {"name": "s", "base": "configs/micro.yaml", "seeds": [0, 1],
           "arms": [{"name": "sft", "stages": ["pretrain", "sft"]},
                    {"name": "think", "stages": ["pretrain", "sft", "reasoning"]},
                    {"name": "hot", "stages": ["pretrain", "sft"], "set": ["stages.sft.trainer.learning_rate=3e-3"]}],
           **over}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_every_arm_and_seed_is_a_validated_curriculum(tmp_path):
    study, configs = load_study(_study(tmp_path))
    assert sorted(configs) == [("hot", 0), ("hot", 1), ("sft", 0), ("sft", 1), ("think", 0), ("think", 1)]
    assert [s.name for s in configs[("think", 1)].stages] == ["pretrain", "sft", "reasoning"]
    assert configs[("think", 1)].seed == 1 and configs[("sft", 0)].name == "s-sft"
    assert configs[("hot", 0)].stage("sft").trainer.learning_rate == 3e-3


@pytest.mark.parametrize("over, fragments", [
    ({"arms": [{"name": "a", "set": ["model.presett=small"]}]}, ["arm 'a'", "model.presett", "Extra inputs"]),
    ({"arms": [{"name": "a", "set": ["stages.sft.trainer.learning_rat=1e-3"]}]},
     ["arm 'a'", "learning_rat", "did you mean 'learning_rate'"]),
    ({"arms": [{"name": "a", "stages": ["pretrain", "rlhf"]}]}, ["arm 'a'", "rlhf", "its stages are"]),
    ({"arms": [{"name": "a", "stages": ["pretrain"]}, {"name": "b", "stages": ["pretrain"]}]},
     ["arms 'a' and 'b' are the same curriculum"]),
    ({"seeds": []}, ["seeds", "is empty"]),
    ({"seeds": [0, 0]}, ["repeat a seed"]),
    ({"arms": [{"name": "a"}, {"name": "a", "stages": ["pretrain"]}]}, ["arm names must be unique"]),
], ids=["unknown-field", "unknown-trainer-key", "unknown-stage", "identical-arms", "no-seeds", "seed-twice",
        "same-name"])
def test_bad_studies_fail_before_anything_trains(tmp_path, over, fragments):
    with pytest.raises(ConfigError) as err:
        load_study(_study(tmp_path, **over))
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)


@pytest.mark.parametrize("path", sorted(__import__("pathlib").Path("configs/studies").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_built_in_study_validates(path):
    study, configs = load_study(path)
    assert len(configs) == len(study.arms) * len(study.seeds)
