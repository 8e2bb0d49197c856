"""The `evaluation:` section: the held-out probe, the lm-eval suite, how answers are generated
(decoding per task, samples per problem), how thinking is handled, and the prompt every model
is scored with.

Reasoning models need more than a chat model's greedy generation: the seed report recommends
temperature 0.6 and top-p 0.95 for reasoning tasks (tiny models loop under greedy decoding),
pass@k and maj@k need several samples per problem, and a score means little unless every
model of the table is asked the same way. Each of those is a setting here, and so part of
the evaluation cache key (evaluation.py hashes this section's dump).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from tinyreason.config.base import KeyStable, Strict
from tinyreason.model.chat import SYSTEM_PROMPT

# The seed report's decoding for reasoning tasks; "greedy" where a task asks for it.
DECODINGS = {"reasoning": {"temperature": 0.6, "top_p": 0.95}, "greedy": {"temperature": 0.0}}
SAMPLING_FIELDS = ("decoding", "temperature", "top_p", "top_k", "seed")


class Decoding(Strict):
    """How answers are sampled: a named preset, any field given overriding it."""

    decoding: Literal["reasoning", "greedy"] = "reasoning"  # reasoning: temperature 0.6, top-p 0.95
    temperature: float | None = Field(None, ge=0)  # 0: greedy
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    seed: int = Field(0, ge=0)  # torch's seed for this task's sampling: the same seed, the same samples

    @model_validator(mode="after")
    def _greedy_takes_no_sampling(self):
        if self.decoding == "greedy":
            given = {k: v for k, v in (("temperature", self.temperature), ("top_p", self.top_p),
                                       ("top_k", self.top_k)) if v is not None and (k != "temperature" or v != 0)}
            if given:
                shown = ", ".join(f"{k}={v}" for k, v in given.items())
                raise ValueError(f"decoding: greedy takes no sampling settings, got {shown}; drop them, or use "
                                 "decoding: reasoning (temperature 0.6, top-p 0.95) with your overrides")
        return self

    def sampling(self) -> dict:
        """HF generate's arguments: {"do_sample": False} for greedy, else temperature/top_p/top_k."""
        preset = DECODINGS[self.decoding]
        temperature = preset["temperature"] if self.temperature is None else self.temperature
        if temperature == 0:
            return {"do_sample": False}
        out = {"do_sample": True, "temperature": temperature}
        top_p = preset.get("top_p") if self.top_p is None else self.top_p
        if top_p is not None and top_p < 1:
            out["top_p"] = top_p
        if self.top_k is not None:
            out["top_k"] = self.top_k
        return out

    @property
    def greedy(self) -> bool:
        return not self.sampling()["do_sample"]


class TaskSpec(Strict):
    """One lm-evaluation-harness task (or group) of the benchmark suite, and how it is generated."""

    task: str  # an lm-eval task/group name: arc_challenge, bbh, gsm8k, or a built-in tinyreason_* task
    num_fewshot: int | None = Field(None, ge=0)
    limit: float | None = Field(None, gt=0)  # < 1: a fraction of the task; >= 1: a number of samples
    metric: str | None = None  # the metric shown in the table and used by the objective; None: the task's first
    # Generation (generate_until tasks; log-likelihood tasks generate nothing). Same fields as Decoding.
    decoding: Literal["reasoning", "greedy"] = "reasoning"
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=1)
    seed: int = Field(0, ge=0)
    repeats: int = Field(1, ge=1)  # samples per problem: pass@k and maj@k come from these
    until: list[str] | None = None  # stop sequences (applied to the answer after </think>); None: the task's own
    max_gen_toks: int | None = Field(None, gt=0)  # None: the suite's max_gen_toks
    pass_at_k: list[int] | None = None  # None: [1, repeats] when repeats > 1
    maj_at_k: list[int] | None = None  # None: [repeats] when repeats > 1; [] for free-form answers (IFEval)

    @model_validator(mode="after")
    def _sampling_rules(self):
        dec = self.sampling_config()  # raises the Decoding rules' errors, named for this task
        if self.repeats > 1 and dec.greedy:
            raise ValueError(f"task {self.task!r}: repeats: {self.repeats} with greedy decoding would give "
                             f"{self.repeats} identical samples; use decoding: reasoning (temperature 0.6, "
                             "top-p 0.95) or a temperature > 0, or repeats: 1")
        for name in ("pass_at_k", "maj_at_k"):
            bad = [k for k in getattr(self, name) or [] if not 1 <= k <= self.repeats]
            if bad:
                raise ValueError(f"task {self.task!r}: {name} {bad} needs 1 <= k <= repeats ({self.repeats}); "
                                 "raise repeats or drop those k")
        return self

    def sampling_config(self) -> Decoding:
        try:
            return Decoding(**{k: getattr(self, k) for k in SAMPLING_FIELDS})
        except ValueError as e:
            raise ValueError(f"task {self.task!r}: {_first_error(e)}") from None

    def ks(self) -> tuple[list[int], list[int]]:
        """The k of pass@k and of maj@k to report; none for a task sampled once."""
        if self.repeats == 1:
            return [], []
        passes = self.pass_at_k if self.pass_at_k is not None else sorted({1, self.repeats})
        return passes, self.maj_at_k if self.maj_at_k is not None else [self.repeats]


class BenchmarkConfig(Strict):
    tasks: list[TaskSpec] = []
    include_path: list[str] = []  # extra task dirs; the built-in tinyreason tasks are always included
    apply_chat_template: bool = True  # the reference report scores with the chat template applied
    fewshot_as_multiturn: bool = True  # few-shot examples as alternating user/assistant turns
    batch_size: int = Field(8, ge=1)
    max_gen_toks: int = Field(256, gt=0)  # generation limit of every generate_until task (TaskSpec.max_gen_toks wins)
    log_samples: bool = True  # per-sample outputs kept for inspection
    # hf: transformers generate (CPU or GPU). vllm: lm-eval's vLLM engine for generation-heavy suites on
    # GPUs (needs `pip install vllm`). auto: vllm when a GPU is visible and vllm is installed, else hf.
    backend: Literal["hf", "vllm", "auto"] = "hf"


class ThinkingConfig(Strict):
    """How thinking is handled, for the probe and every generation task alike."""

    # auto: the model decides whether to open <think>; on: "<think>\n" starts every answer;
    # off: an empty "<think>\n\n</think>\n" block starts it and <think> cannot reopen.
    mode: Literal["auto", "on", "off"] = "auto"
    budget: int | None = Field(None, ge=1)  # thinking tokens; then </think> is forced and the answer generated
    # Score reasoning models (a tokenizer with <think> tokens) a second time with thinking off, beside
    # on: the report's "what thinking buys" table. Doubles the generation work of those models.
    compare_off: bool = True


class PromptConfig(Strict):
    """The prompt conditions every model of the table is scored under, base included."""

    # None: the prompt each model trained with. Its saved template inserts model.system_prompt (or the
    # family's default), which base and stages share, since the stages keep the base's template
    # (model/templates.py). A string: this system turn for every model, overriding that. Not empty:
    # lm-eval drops an empty one, and then each template would insert its own default.
    system_prompt: str | None = Field(None, min_length=1)
    # model: each model's own saved template, the one its stages trained with, so base and stages
    # share it; platform: tinyreason's ChatML template for every model of the table
    chat_template: Literal["platform", "model"] = "model"


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


class EvalConfig(KeyStable):
    ADDED: ClassVar[tuple[str, ...]] = ("heldout_samples",)  # evaluation keys made before it stay valid

    heldout_problems: int = Field(100, ge=0)  # synthetic held-out reasoning problems scored after every stage
    # draws per held-out problem: accuracy is their mean (pass@1 from k samples, as the R1 report
    # estimates it), with pass@k beside it. One sample per problem at temperature 0.6 leaves the
    # score a draw's luck on every problem the model gets right only sometimes: 2.3 points of
    # standard error from that alone at 200 problems for the demo's DPO stage, so 3.3 on a
    # stage-to-stage difference (bench/results/grpo_variants_draws_seed1.json)
    heldout_samples: int = Field(1, ge=1)
    max_new_tokens: int = Field(96, gt=0)  # the probe's generation limit; outputs hitting it count as truncated
    batch_size: int = Field(16, ge=1)
    decoding: Decoding = Decoding()  # the probe's decoding (the suite's is per task)
    # True: the base and every stage; "last": the base and the final stage (a study's arms compare
    # finals); False: nothing
    after_each_stage: bool | Literal["last"] = True
    benchmarks: BenchmarkConfig = BenchmarkConfig()
    thinking: ThinkingConfig = ThinkingConfig()
    prompt: PromptConfig = PromptConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    decontamination: DecontamConfig = DecontamConfig()

    @model_validator(mode="after")
    def _draws_differ(self):
        if self.heldout_samples > 1 and self.decoding.sampling().get("do_sample") is False:
            raise ValueError(f"evaluation.heldout_samples: {self.heldout_samples} with greedy decoding would give "
                             f"{self.heldout_samples} identical answers per problem; set heldout_samples: 1, or "
                             "decoding: reasoning to sample")
        return self

    @model_validator(mode="after")
    def _budget_fits(self):
        budget = self.thinking.budget
        if budget is None:
            return self
        limits = [("evaluation.max_new_tokens", self.max_new_tokens)] if self.heldout_problems else []
        limits += [(f"max_gen_toks of task {t.task!r}" if t.max_gen_toks else "evaluation.benchmarks.max_gen_toks",
                    gen_limit(t, self.benchmarks)) for t in self.benchmarks.tasks]
        for name, limit in limits:
            if budget >= limit:
                raise ValueError(f"evaluation.thinking.budget = {budget} is not below {name} = {limit}: the answer "
                                 "needs room after the forced </think>; raise the limit or lower the budget")
        return self


def gen_limit(spec: TaskSpec, bench: BenchmarkConfig) -> int:
    """The generation limit a task runs with: its own max_gen_toks, else the suite's."""
    return spec.max_gen_toks or bench.max_gen_toks


def _first_error(e: ValueError) -> str:
    errors = getattr(e, "errors", None)
    if callable(errors):  # a pydantic ValidationError: its first message, without pydantic's framing
        return errors()[0]["msg"].removeprefix("Value error, ")
    return str(e)
