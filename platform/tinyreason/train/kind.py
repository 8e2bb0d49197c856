"""What a stage kind declares about itself. Each train/<kind>.py builds one `StageKind`,
and train/registry.py collects them: the platform's only list of kinds.

A kind names the row schema its blends hold, the TRL config class its trainer settings
are checked against, how it prepares the tokenizer and tokenizes rows, its worker loop,
its own config rules, and the curves its report draws. Adding a kind is one module here,
its registration, and tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Literal

if TYPE_CHECKING:
    from tinyreason.config.experiment import StageConfig
    from tinyreason.data.tokenize import Step
    from tinyreason.train.job import StageJob


@dataclass(frozen=True)
class Curve:
    """A logged metric that a stage's report plots, with its panel title. A key may hold one `*`
    for one path segment: `rewards/*/mean` is one line per reward. `transform` maps each logged
    value (math.exp turns a loss into a perplexity), `point` names an evaluation score
    (eval/scores.py's keys) marked at the stage's last step on the same axis, `log` draws the
    axis on a log scale."""

    key: str
    label: str
    transform: Callable[[float], float] | None = None
    point: str | None = None
    log: bool = False


LOSS = Curve("loss", "training loss")
LEARNING_RATE = Curve("learning_rate", "learning rate")


@dataclass(frozen=True)
class StageKind:
    name: str
    summary: str  # one line: what the stage does
    schema: str  # the row schema of its blends (data/schema.py)
    # TRL's config class for its trainer settings; a function, since importing TRL takes seconds
    trl_config: Callable[[], type]
    train_loop: Callable[[dict], None]  # Ray Train's train_loop_per_worker
    tokenize_steps: Callable[[str, "StageConfig"], list["Step"]]  # (tokenizer dir, stage) -> batch transforms
    prepare_tokenizer: Callable[[object, "StageConfig"], object]  # (parent's tokenizer, stage) -> this stage's
    check: Callable[["StageConfig"], None] | None = None  # its config rules, run when a config is validated
    # What packing means for its rows: whole documents cut into blocks, chat rows packed into
    # bins, or none (rows stay rows: preference pairs, prompts). Settles which batch settings apply.
    packing: Literal["documents", "chat"] | None = None
    rows: str = "rows"  # what one of its batch rows is, for messages ("pairs", "prompts")
    # How the rows reach the workers: a fixed shard per rank, or every row on every rank (when the
    # trainer's own sampler must see them all, as GRPO's groups do)
    shards: Literal["split", "whole"] = "split"
    sections: tuple[str, ...] = ()  # the optional stage sections it reads (config/experiment.py KIND_SECTIONS)
    # Models it reads besides its parent, by role (distill: {"teacher": stage.teacher.model}). The driver
    # resolves each reference (tinyreason/refs.py), adds its key to the stage key and its path to StageJob.inputs.
    inputs: Callable[["StageConfig"], dict[str, str]] | None = None
    # Driver-side checks once its tokenizer and inputs exist, before any worker starts (a shared vocabulary)
    preflight: Callable[["StageJob"], None] | None = None
    think_tokens: bool = False  # adds <think> and </think> to the tokenizer unless the stage says otherwise
    curves: tuple[Curve, ...] = (LOSS,)
    # logged metrics whose last value goes into the stage summary; "prefix/" takes every key under it
    summary_metrics: tuple[str, ...] = ()
    # (summary, metrics) -> lines the driver warns with after the stage: a learning signal that was absent
    review: Callable[[dict, list[dict]], list[str]] | None = None
    extra: dict = field(default_factory=dict)  # free-form facts a kind wants others to read
