"""A Ray Tune sweep over one stage's trainer settings; every point is validated up front."""

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
    space: dict[str, ParamSpace] = Field(min_length=1)  # trainer settings, TRL names
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
                StageConfig.model_validate({**stage.model_dump(), "trainer": {**stage.trainer.model_dump(), key: v}})
            except ValidationError as e:
                raise ConfigError(format_errors(e, prefix=f"{path}: space.{key}={v!r}")) from None
    return sweep, cfg
