"""A study: whole curricula compared side by side, each arm over several seeds.

An arm is the base experiment with a stage list chosen from the base's stages (in order;
each stage starts from the one before it in the arm) and `--set` style overrides. Every
(arm, seed) is validated here, before anything trains: an override that names no field,
two arms that are the same curriculum, or an empty seed list fail with the arm named.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from pydantic import Field, ValidationError, field_validator

from tinyreason.config.base import ConfigError, Strict, format_errors, read_yaml, resolve_path
from tinyreason.config.experiment import ExperimentConfig
from tinyreason.config.loading import apply_override, pick_stages, validate_config


class ArmConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")  # becomes part of run names and paths
    stages: list[str] | None = None  # the base's stages to run, in order; None: all of them
    set: list[str] = []  # overrides for this arm, as --set: "model.preset=small", "stages.dpo.trainer.beta=0.2"
    about: str | None = None  # a sentence for the report; default: its stages in words


class ScalingSpec(Strict):
    """Fit the held-out loss of a pretrain stage against model size and training compute."""

    stage: str  # the pretrain stage whose held-out loss (eval pretrain.nll) is fitted
    extrapolate: float = Field(10.0, gt=1)  # the fit is drawn (with its interval) to this x the largest size


class StudyConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    base: str  # the experiment YAML every arm starts from
    overrides: list[str] = []  # --set style overrides applied to the base for every arm
    arms: list[ArmConfig] = Field(min_length=1)
    seeds: list[int] = [0]  # every arm runs once per seed; spreads across seeds are reported
    max_concurrent: int = Field(2, ge=1)  # arms running at once (each still waits for its workers' CPUs)
    scaling: ScalingSpec | None = None

    @field_validator("seeds")
    @classmethod
    def _some_seeds(cls, v):
        if not v:
            raise ValueError("seeds is empty; give at least one, e.g. seeds: [0] (or [0, 1, 2] for spreads)")
        if len(set(v)) != len(v):
            raise ValueError(f"seeds {v} repeat a seed; a repeat would reuse the same stages, not add a sample")
        return v


def load_study(path: str | Path, overrides: list[str] | None = None
               ) -> tuple[StudyConfig, dict[tuple[str, int], ExperimentConfig]]:
    """The study and the curriculum of every (arm, seed), all validated before anything runs."""
    raw = read_yaml(resolve_path(str(path)))
    try:
        study = StudyConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_errors(e, prefix=str(path))) from None
    names = [a.name for a in study.arms]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{path}: arm names must be unique; repeated: {', '.join(dupes)}")
    base = read_yaml(resolve_path(study.base))
    for assignment in [*study.overrides, *(overrides or [])]:
        apply_override(base, assignment)
    configs, seen = {}, {}
    for arm in study.arms:
        raw_arm = arm_raw(study, arm, base)
        for seed in study.seeds:
            cfg = _validate(path, arm, {**raw_arm, "seed": seed})
            configs[(arm.name, seed)] = cfg
        key = json.dumps(_comparable(configs[(arm.name, study.seeds[0])]), sort_keys=True)
        if key in seen:
            raise ConfigError(f"{path}: arms {seen[key]!r} and {arm.name!r} are the same curriculum; change one "
                              "(its stages or its set overrides) or drop it")
        seen[key] = arm.name
    return study, configs


def arm_raw(study: StudyConfig, arm: ArmConfig, base: dict) -> dict:
    """The arm's experiment as raw YAML: its stages picked from the base, its overrides applied."""
    raw = copy.deepcopy(base)
    if arm.stages is not None:
        raw = pick_stages(raw, arm.stages, f"study {study.name}: arm {arm.name!r}", f"the base {study.base}")
    raw["name"] = f"{study.name}-{arm.name}"
    for assignment in arm.set:
        try:
            apply_override(raw, assignment)
        except ConfigError as e:
            raise ConfigError(f"study {study.name}: arm {arm.name!r}: {e}") from None
    return raw


def _validate(path, arm: ArmConfig, raw: dict) -> ExperimentConfig:
    try:
        return validate_config(raw, source=f"{path}: arm {arm.name!r} (seed {raw['seed']})")
    except ConfigError as e:
        raise ConfigError(f"{e}\n  (the arm's overrides: {arm.set or 'none'}; an override must name an existing "
                          "field, e.g. stages.<name>.trainer.learning_rate)") from None


def _comparable(cfg: ExperimentConfig) -> dict:
    """What makes two arms the same curriculum: everything but the name."""
    out = cfg.model_dump(mode="json")
    out.pop("name")
    return out
