"""The data sections of an experiment YAML: a blend and its sources (synthetic generators, hub
datasets, local files, a teacher model that generates).
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from tinyreason.config.base import KeyStable, Strict
from tinyreason.data.synthetic import GENERATORS, TASK_GENERATORS
from tinyreason.data.world import check_tasks


class SourceConfig(KeyStable):
    """One data source of a blend: exactly one of synthetic / hub / files / teacher."""

    ADDED = ("tasks",)  # left out of blend and stage keys while unset (config/base.py KeyStable)

    synthetic: str | None = None  # a generator of data/synthetic.py (GENERATORS)
    hub: str | None = None  # e.g. HuggingFaceTB/smoltalk2
    subset: str | None = None  # hub config name
    # hub: a commit sha, tag or branch of the dataset repo; unpinned sources read whatever the hub
    # serves that day, and the blend card says so
    revision: str | None = None
    split: str = "train"
    streaming: bool = True  # read hub sources as streams: caps apply before download
    files: str | list[str] | None = None  # local jsonl/json/parquet/csv paths or globs
    # a model that answers prompt rows: sequence-level distillation, rejection sampling (data/teacher.py)
    teacher: TeacherSource | None = None
    entries: int | None = Field(None, gt=0)  # cap on rows taken from this source
    drop_columns: list[str] = []
    rename_columns: dict[str, str] = {}
    seed: int = 0
    # synthetic: only these task families of the world (data/world.py TASKS), in equal shares, e.g.
    # a blend of one family; None draws all four. (GRPO on the families the demo's parents half-solve
    # let the others decay: README, "Where the two misses come from")
    tasks: list[str] | None = None

    @field_validator("synthetic")
    @classmethod
    def _known_generator(cls, v):
        if v is not None and v not in GENERATORS:
            raise ValueError(f"unknown synthetic generator {v!r}; allowed: {', '.join(GENERATORS)}")
        return v

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v):
        return None if v is None else list(check_tasks(v))

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [k for k in ("synthetic", "hub", "files", "teacher") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"a source needs exactly one of synthetic, hub, files, teacher; got {given or 'none'}")
        if self.revision is not None and not self.hub:
            what = ("local files (fingerprinted by content)" if self.files else "a teacher's samples (keyed by the "
                    "teacher and its prompts)" if self.teacher else "a synthetic generator (keyed by its code)")
            raise ValueError(f"revision={self.revision!r} pins a hub dataset, but this source reads {what}; "
                             "remove revision")
        if self.tasks is not None and self.synthetic not in TASK_GENERATORS:
            raise ValueError(f"tasks picks the synthetic world's task families, which only the synthetic generators "
                             f"{', '.join(TASK_GENERATORS)} draw; this source reads {self.label}: remove tasks")
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


class TeacherSource(KeyStable):
    """A source that generates: a teacher model answers every prompt row `num_samples` times
    on Ray Data (a pool of model actors), and the kept samples become chat rows. With the
    student's own parent as teacher and `filters.correct`, it is rejection-sampling fine-tuning.
    With `pairs`, a prompt's right samples are paired with its wrong ones as preference rows:
    DPO on the parent's own mistakes (on-policy pairs, as in iterative reasoning preference
    optimization, Pang et al. 2024)."""

    ADDED = ("pairs",)  # left out of teacher blends' keys while off (config/base.py KeyStable)

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
    # preference rows: each right sample chosen over a wrong one of the same prompt (a DPO stage's
    # source); a prompt whose kept samples are all right or all wrong gives no pair
    pairs: bool = False

    @model_validator(mode="after")
    def _sampling(self):
        if self.pairs and self.filters.correct:
            raise ValueError("pairs puts a prompt's wrong samples on the rejected side, and filters.correct drops "
                             "them; remove filters.correct (the chosen side is always a right answer)")
        if self.pairs and self.num_samples < 2:
            raise ValueError(f"pairs needs a right and a wrong sample of one prompt, and num_samples="
                             f"{self.num_samples} gives one; set num_samples >= 2 (4 to 8 gives most prompts a pair)")
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
