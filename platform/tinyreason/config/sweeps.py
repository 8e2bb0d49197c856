"""A Ray Tune sweep over one stage's settings; every point is validated up front.

A space key is a trainer setting (TRL's name: `learning_rate`), or a stage section and one
of its fields: `peft.r` sweeps the LoRA rank, together with the learning rate if both are keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from tinyreason.config.base import ConfigError, Strict, format_errors, read_yaml, resolve_path
from tinyreason.config.experiment import ExperimentConfig, StageConfig
from tinyreason.config.loading import load_config


class ParamSpace(Strict):
    """One hyperparameter's search space: exactly one of grid / choice / uniform / loguniform."""

    grid: list[Any] | None = None
    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None  # learning rates: sample the exponent

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in ("grid", "choice", "uniform", "loguniform") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of grid, choice, uniform, loguniform; got {given or 'none'}")
        rng = self.uniform or self.loguniform
        if rng is not None and not (rng[0] < rng[1]) or (self.loguniform and self.loguniform[0] <= 0):
            raise ValueError(f"range {list(rng)} must be increasing (and positive for loguniform)")
        return self


class SchedulerConfig(Strict):
    type: Literal["none", "asha"] = "none"
    metric: str = "loss"  # a key of the stage's training logs (loss, grad_norm, rewards/margins...)
    mode: Literal["min", "max"] = "min"
    grace_period: int = Field(2, ge=1)  # optimizer steps before a trial may be stopped (ASHA's first rung)
    reduction_factor: float = Field(2.0, gt=1)  # rungs at grace_period * factor**k; the worse 1 - 1/factor stop


class TrialResources(Strict):
    cpu: float = Field(0.0, ge=0)  # the trial driver itself; its TorchTrainer workers ask for their own
    gpus_per_worker: float | None = Field(None, gt=0)  # e.g. 0.25: four 135M trials share one GPU


class SweepConfig(Strict):
    name: str
    curriculum: str  # the experiment YAML whose stage is swept
    overrides: list[str] = []  # --set style overrides applied to the curriculum first
    stage: str  # the stage to sweep; stages before it are trained once and reused
    search: Literal["grid", "random", "optuna"] = "grid"  # optuna: model-based (TPE)
    space: dict[str, ParamSpace] = Field(min_length=1)  # trainer settings (TRL names), or `peft.<field>`
    num_samples: int = Field(1, ge=1)  # grid: repeats of the grid; random/optuna: trials
    max_concurrent: int = Field(1, ge=1)
    resources: TrialResources = TrialResources()
    scheduler: SchedulerConfig = SchedulerConfig()
    seed: int = 0


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> tuple[SweepConfig, ExperimentConfig]:
    """The sweep and its curriculum, both validated; every point of the space is a valid stage."""
    raw = read_yaml(resolve_path(str(path)))
    try:
        sweep = SweepConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_errors(e, prefix=str(path))) from None
    cfg = load_config(sweep.curriculum, list(sweep.overrides) + list(overrides or []))
    stage = cfg.stage(sweep.stage)
    for key, space in sweep.space.items():
        values = space.grid or space.choice or list(space.uniform or space.loguniform)
        for v in values:
            try:
                apply_point(stage, {key: v})
            except ValidationError as e:
                raise ConfigError(format_errors(e, prefix=f"{path}: space.{key}={v!r}")) from None
            except ValueError as e:
                raise ConfigError(f"{path}: space.{key}: {e}") from None
    return sweep, cfg


# Stage sections a space key may name before a dot; any other key is a trainer setting
SECTIONS = ("trainer", "peft")


def section_of(key: str) -> tuple[str, str]:
    """(stage section, field) a space key addresses: `peft.r` -> (peft, r); `beta` -> (trainer, beta)."""
    head, _, rest = key.partition(".")
    return (head, rest) if rest and head in SECTIONS else ("trainer", key)


def apply_point(stage: StageConfig, params: dict[str, Any]) -> StageConfig:
    """The stage with one point of the space filled in, validated like any stage config."""
    raw = stage.model_dump()
    for key, value in params.items():
        section, name = section_of(key)
        if raw.get(section) is None:
            raise ValueError(f"stage {stage.name} has no {section} section to vary {name} in; give it one "
                             f"(e.g. {section}: {{r: 8}}) in the curriculum")
        raw[section] = {**raw[section], name: value}
    return StageConfig.model_validate(raw)
