"""The typed sections of an experiment YAML: storage, model, tokenizer, data, trainer,
DeepSpeed, scaling, checkpoints, evaluation, tracking.

Nothing here knows the stage kinds: a stage kind declares its own rules in its module
(train/<kind>.py), and config/experiment.py asks the registry for them.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tinyreason.config.base import Strict
from tinyreason.data.synthetic import GENERATORS
from tinyreason.model.presets import PRESETS


class StorageConfig(Strict):
    path: str = "runs"  # a local dir for one machine; s3://bucket/prefix (any fsspec URI) for clusters


class ModelConfig(Strict):
    preset: str | None = "tiny"  # built-in shape (micro/tiny/small/tinystories-20m) or smollm2-135m
    name_or_path: str | None = None  # hub id or local dir; overrides the preset's weights
    trust_remote_code: bool = False  # off unless asked: remote code runs with your credentials
    # sdpa; sdpa_varlen: padding-free packed batches through torch's own varlen flash kernel on
    # GPUs, per-example SDPA elsewhere (model/varlen.py); flash_attention_2 where flash-attn is installed
    attn_implementation: str = "sdpa"

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
        return self


class TokenizerConfig(Strict):
    path: str | None = None  # an existing tokenizer (hub id or dir); None = use the model's, or train one
    train_vocab_size: int = Field(2048, ge=300, le=262144)  # from-scratch BPE size; small vocabs suit tiny models
    train_rows: int = Field(20000, ge=100)  # rows of the first pretrain blend to train the BPE on


class SourceConfig(Strict):
    """One data source of a blend: exactly one of synthetic / hub / files / teacher."""

    synthetic: str | None = None  # a generator of data/synthetic.py (GENERATORS)
    hub: str | None = None  # e.g. HuggingFaceTB/smoltalk2
    subset: str | None = None  # hub config name
    split: str = "train"
    streaming: bool = True  # read hub sources as streams: caps apply before download
    files: str | list[str] | None = None  # local jsonl/json/parquet/csv paths or globs
    # a model that answers prompt rows: sequence-level distillation, rejection sampling (data/teacher.py)
    teacher: TeacherSource | None = None
    entries: int | None = Field(None, gt=0)  # cap on rows taken from this source
    drop_columns: list[str] = []
    rename_columns: dict[str, str] = {}
    seed: int = 0

    @field_validator("synthetic")
    @classmethod
    def _known_generator(cls, v):
        if v is not None and v not in GENERATORS:
            raise ValueError(f"unknown synthetic generator {v!r}; allowed: {', '.join(GENERATORS)}")
        return v

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [k for k in ("synthetic", "hub", "files", "teacher") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"a source needs exactly one of synthetic, hub, files, teacher; got {given or 'none'}")
        if self.teacher is not None and self.entries is not None:
            raise ValueError("entries caps rows read, and a teacher source makes num_samples rows per prompt; cap its "
                             "prompts' sources instead (teacher.prompts[i].entries)")
        return self

    @property
    def label(self) -> str:
        if self.teacher:
            return f"teacher:{self.teacher.model}"
        if self.synthetic:
            return f"synthetic:{self.synthetic}"
        if self.hub:
            return self.hub
        return self.files if isinstance(self.files, str) else ",".join(self.files)


class TeacherFilters(Strict):
    """Which generated samples a teacher source keeps. Each sample dropped is counted under its
    reason in the blend's card (data/teacher.py FILTER_REASONS) and sampled into rejected.jsonl."""

    correct: bool = False  # only samples whose final answer matches the prompt's gold answer (answers.grade)
    well_formed: bool = False  # only samples with one <think>...</think> block at the start and an answer after it
    max_tokens: int | None = Field(None, gt=0)  # only samples of at most this many completion tokens
    finished: bool = True  # drop samples cut at max_new_tokens: trained on, the cut would end with <|im_end|>


class TeacherSource(Strict):
    """A source that generates: a teacher model answers every prompt row `num_samples` times
    on Ray Data (a pool of model actors), and the kept samples become chat rows. With the
    student's own parent as teacher and `filters.correct`, it is rejection-sampling fine-tuning."""

    model: str  # an earlier stage's name, a model dir, a .gguf file, or a hub id (tinyreason/refs.py)
    prompts: list[SourceConfig] = Field(min_length=1)  # sources of prompt rows: a question and its gold answer
    num_samples: int = Field(1, ge=1, le=64)  # completions per prompt
    temperature: float = Field(0.7, ge=0)  # 0: greedy decoding
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(128, gt=0)
    batch_size: int = Field(16, ge=1)  # prompts per generate call (x num_samples sequences)
    actors: int | None = Field(None, ge=1)  # model actors; None: one per GPU, else one per CPU of the cluster
    seed: int = 0
    filters: TeacherFilters = TeacherFilters()

    @model_validator(mode="after")
    def _sampling(self):
        if self.temperature == 0 and self.num_samples > 1:
            raise ValueError(f"num_samples={self.num_samples} at temperature 0: greedy decoding gives the same "
                             "completion every time; set temperature > 0 (e.g. 0.7) or num_samples: 1")
        nested = [i for i, s in enumerate(self.prompts) if s.teacher is not None]
        if nested:
            raise ValueError(f"prompts.{nested[0]} is itself a teacher source; prompts come from synthetic, hub or "
                             "file sources of prompt rows")
        return self


SourceConfig.model_rebuild()  # its `teacher` field names TeacherSource, defined after it


class BlendConfig(Strict):
    name: str | None = None
    file: str | None = None  # the blend YAML this was read from, when the stage named one
    sources: list[SourceConfig] = Field(min_length=1)
    max_chars: int = Field(100_000, gt=0)  # rows longer than this are rejected as too_long
    heldout_fraction: float = Field(0.0, ge=0.0, lt=0.5)  # pretrain: rows kept back for validation perplexity


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
    seed: int = 0
    # recompute activations in backward: less memory, slower steps. transformers 5.23 renamed
    # gradient_checkpointing to this; None leaves it off without passing the old name's warning
    activation_checkpointing: bool | None = None
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
        return {k: v for k, v in self.model_dump().items() if v is not None}


class TaskSpec(Strict):
    """One lm-evaluation-harness task (or group) of the benchmark suite."""

    task: str  # an lm-eval task/group name: arc_challenge, bbh, gsm8k, or a built-in tinyreason_* task
    num_fewshot: int | None = Field(None, ge=0)
    limit: float | None = Field(None, gt=0)  # < 1: a fraction of the task; >= 1: a number of samples
    metric: str | None = None  # the metric shown in the table and used by the objective; None: the task's first


class BenchmarkConfig(Strict):
    tasks: list[TaskSpec] = []
    include_path: list[str] = []  # extra task dirs; the built-in tinyreason tasks are always included
    apply_chat_template: bool = True  # the reference report scores with the chat template applied
    fewshot_as_multiturn: bool = True  # few-shot examples as alternating user/assistant turns
    batch_size: int = Field(8, ge=1)
    max_gen_toks: int = Field(256, gt=0)  # generation limit for generate_until tasks
    log_samples: bool = True  # per-sample outputs kept for inspection


class ObjectiveConfig(Strict):
    """The single number a sweep maximizes: a weighted mean of benchmark metrics."""

    name: str = "score"
    weights: dict[str, float] = {}  # "task/metric" or "task" -> weight; empty: the mean of every task's metric


class DecontamConfig(Strict):
    """Training rows that overlap an evaluation item are dropped and counted in the blend card."""

    enabled: bool = True
    files: list[str] = []  # local eval sets (jsonl with question/text fields), e.g. exported benchmark items
    n: int | None = Field(None, ge=2)  # word n-gram size; None: 13 for benchmark files, 8 for synthetic items
    threshold: float | None = Field(None, gt=0, le=1)  # share of one eval item's n-grams found in a row


class EvalConfig(Strict):
    heldout_problems: int = Field(100, ge=0)  # synthetic held-out reasoning problems scored after every stage
    max_new_tokens: int = Field(96, gt=0)  # generation limit; outputs hitting it count as truncated
    batch_size: int = Field(16, ge=1)
    after_each_stage: bool = True
    benchmarks: BenchmarkConfig = BenchmarkConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    decontamination: DecontamConfig = DecontamConfig()


class WandbConfig(Strict):
    enabled: bool = True
    project: str = "tinyreason"
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"  # auto: online with WANDB_API_KEY, else offline


class TrackingConfig(Strict):
    wandb: WandbConfig = WandbConfig()




@functools.cache
def _scheduler_names() -> frozenset[str]:
    from transformers.trainer_utils import SchedulerType  # heavy: transformers (~3 s), only when a config is read

    return frozenset(s.value for s in SchedulerType)
