"""An experiment: its stages, each of a registered kind, checked against that kind's rules.

The stage kinds live in train/<kind>.py, one module each, and the registry built from
them is the only list of kinds: this module asks it whether a kind exists, which TRL
config class names its trainer settings, and which rules its stage config must follow.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from typing import Any

from pydantic import Field, field_validator, model_validator

from tinyreason.config import references
from tinyreason.config.base import ConfigError, Strict
from tinyreason.config.lora import PeftSection
from tinyreason.config.sections import (CheckpointPolicy, CostConfig, DataConfig, DeepSpeedConfig, EvalConfig,
                                        ModelConfig, ScalingConfig, StorageConfig, TokenizerConfig, TrackingConfig,
                                        TrainerSettings)
from tinyreason.config.teacher import TeacherSection
from tinyreason.model.presets import SHAPES
from tinyreason.train import registry

# Stage sections that only some kinds read (StageKind.sections): given to another kind, they are an error
KIND_SECTIONS = ("rewards", "teacher", "peft")
# Settings that the platform owns and sets itself; a config may not override them.
PLATFORM_OWNED = frozenset({"output_dir", "deepspeed", "report_to", "bf16", "fp16", "use_cpu", "max_length"})


class StageConfig(Strict):
    name: str
    kind: str  # a registered stage kind: train/registry.py lists them
    data: DataConfig
    trainer: TrainerSettings = TrainerSettings()
    deepspeed: DeepSpeedConfig = DeepSpeedConfig()
    scaling: ScalingConfig = ScalingConfig()
    checkpoints: CheckpointPolicy = CheckpointPolicy()
    add_think_tokens: bool | None = None  # default: the kind's (True for reasoning_sft)
    # grpo: the rewards, each {name: <built-in>, weight, ...} or {path: "module:function", weight, name}
    rewards: list[dict[str, Any]] | None = None
    teacher: TeacherSection | None = None  # distill: the model whose token distributions the student learns
    peft: PeftSection | None = None  # LoRA on the stage's TRL trainer, merged into the export (config/lora.py)
    # The stage it starts from: an earlier stage's name, or `base`; default the stage before it.
    # Stages that name the same parent are arms of one experiment sharing that prefix.
    parent: str | None = None
    # Start from freshly initialised weights of this preset's shape instead: the parent gives
    # only the tokenizer (a smaller student beside its teacher)
    init: str | None = None

    @field_validator("kind")
    @classmethod
    def _registered(cls, v):
        registry.get(v)  # an unknown kind fails here, with the registered ones listed
        return v

    @field_validator("init")
    @classmethod
    def _shape(cls, v):
        if v is not None and v not in SHAPES:
            raise ValueError(f"init = {v!r}: fresh weights come from a preset shape: {', '.join(SHAPES)}")
        return v

    @model_validator(mode="after")
    def _kind_rules(self):
        kind = registry.get(self.kind)
        for section in KIND_SECTIONS:
            if getattr(self, section) is not None and section not in kind.sections:
                users = [k for k in registry.names() if section in registry.get(k).sections]
                raise ValueError(f"{section} applies to {' and '.join(users) or 'no'} stages, not to a {self.kind} "
                                 f"stage; remove it")
        check_trainer_keys(self.kind, kind.trl_config(), self.trainer)
        self._check_batching(kind)
        if kind.check is not None:
            kind.check(self)
        s = self.scaling
        if s.min_workers is not None:
            self._check_elastic()
        if s.use_gpu and s.num_workers > 1 and s.gpus_per_worker < 1:
            raise ValueError(f"scaling.gpus_per_worker={s.gpus_per_worker} with {s.num_workers} workers: NCCL "
                             "refuses two ranks on one GPU; use gpus_per_worker: 1, or num_workers: 1 to share a GPU")
        return self

    def _check_elastic(self) -> None:
        """An elastic stage keeps its global batch on fewer workers by accumulating more
        micro-batches: every worker count it may run on must share them evenly."""
        s, ga = self.scaling, self.trainer.gradient_accumulation_steps
        per_step = s.num_workers * ga
        uneven = [w for w in range(s.min_workers, s.num_workers + 1) if per_step % w]
        if uneven:
            fewest = next(m for m in range(s.min_workers, s.num_workers + 1)
                          if all(per_step % w == 0 for w in range(m, s.num_workers + 1)))
            accumulate = math.lcm(ga, *(w // math.gcd(w, s.num_workers) for w in range(s.min_workers, s.num_workers + 1)))
            raise ValueError(
                f"scaling.min_workers={s.min_workers}: a step is num_workers x gradient_accumulation_steps = "
                f"{s.num_workers} x {ga} = {per_step} micro-batches, which {', '.join(map(str, uneven))} workers "
                f"cannot share evenly; raise min_workers to {fewest}, or gradient_accumulation_steps to {accumulate} "
                "(with a per_device_train_batch_size that keeps the batch you want)")
        if self.deepspeed.enabled and self.deepspeed.zero_stage == 3:
            raise ValueError("scaling.min_workers needs deepspeed.zero_stage 0, 1 or 2: a ZeRO-3 checkpoint is not "
                             "resharded to another worker count here (train/elastic.py); use zero_stage 2 or remove "
                             "min_workers")

    def _check_batching(self, kind) -> None:
        """Batch settings that only some kinds' rows support (see StageKind.packing)."""
        d, t = self.data, self.trainer
        if kind.packing is None:
            packers = ", ".join(k for k in registry.names() if registry.get(k).packing)
            for name, value in (("tokens_per_step", d.tokens_per_step), ("padding_free", d.padding_free)):
                if value is not None:
                    raise ValueError(f"data.{name} applies to stages that pack rows ({packers}); a {self.kind} "
                                     f"stage batches trainer.per_device_train_batch_size {kind.rows}; remove it")
        if d.tokens_per_step is not None:
            if t.per_device_train_batch_size is not None:
                raise ValueError(f"data.tokens_per_step={d.tokens_per_step} and trainer.per_device_train_batch_size="
                                 f"{t.per_device_train_batch_size} both set the batch size; keep one")
            slots = self.scaling.num_workers * t.gradient_accumulation_steps
            if d.tokens_per_step < slots * d.max_length:
                raise ValueError(
                    f"data.tokens_per_step={d.tokens_per_step} gives each of {slots} micro-batches (num_workers x "
                    f"gradient_accumulation_steps) {d.tokens_per_step // slots} tokens, less than one "
                    f"data.max_length={d.max_length} row; raise it to at least {slots * d.max_length}")
        if d.packed_batch == "examples":
            if kind.packing != "chat" or not d.packing:
                raise ValueError(f"data.packed_batch=examples counts the chat rows inside packed bins: it needs an sft "
                                 f"or reasoning_sft stage with data.packing: true (this is {self.kind}, packing "
                                 f"{str(d.packing).lower()}); remove it")
            if d.tokens_per_step is not None:
                raise ValueError(f"data.packed_batch=examples and data.tokens_per_step={d.tokens_per_step} both set "
                                 "the batch size; keep one")

    @property
    def think_tokens(self) -> bool:
        """Whether this stage adds <think> and </think> to the tokenizer."""
        return registry.get(self.kind).think_tokens if self.add_think_tokens is None else self.add_think_tokens


class ExperimentConfig(Strict):
    name: str = "experiment"
    # Every source of randomness: blend order, from-scratch weights, each stage's trainer.seed
    # (unless the stage sets its own) and sampling in evaluation. Same seed, same numbers.
    seed: int = 0
    # Reuse a finished stage whose config, blend and parent match but which was trained by other
    # numerics libraries or platform code (the report marks it stale and says what differs)
    reuse_stale: bool = False
    storage: StorageConfig = StorageConfig()
    model: ModelConfig = ModelConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    stages: list[StageConfig] = Field(min_length=1)
    evaluation: EvalConfig = EvalConfig()
    tracking: TrackingConfig = TrackingConfig()
    cost: CostConfig = CostConfig()

    @model_validator(mode="after")
    def _stage_rules(self):
        names = [s.name for s in self.stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage names must be unique; repeated: {', '.join(dupes)}")
        references.check(self)
        return self

    def stage(self, name: str) -> StageConfig:
        for s in self.stages:
            if s.name == name:
                return s
        raise ConfigError(f"no stage named {name!r}; stages are: {', '.join(s.name for s in self.stages)}")


# --------------------------------------------------------------------------- TRL names


@functools.cache
def _fields(cls) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def check_trainer_keys(kind: str, trl_config: type, trainer: TrainerSettings) -> None:
    """Trainer settings are TRL's own argument names: each must be a field of the kind's TRL
    config class, and none may be one the platform sets itself."""
    extra = set(trainer.model_extra or {})
    owned = sorted(extra & PLATFORM_OWNED)
    if owned:
        raise ValueError(
            f"trainer.{owned[0]} is set by the platform (max_length: data.max_length; precision: deepspeed.precision)"
        )
    fields = _fields(trl_config)
    unknown = sorted(k for k in extra if k not in fields)
    if unknown:
        close = difflib.get_close_matches(unknown[0], fields, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"trainer.{unknown[0]} is not a TRL {kind} argument ({trl_config.__name__}){hint}")
