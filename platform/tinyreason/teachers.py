"""The driver's side of teacher blend sources: each source's teacher resolved to a model, its
prompts built as an ordinary prompt blend, and its samples generated on Ray Data
(data/teacher.py) when the blend that holds it is built.

The blend's cache key covers each teacher's key (an earlier stage's key, or the content of a
model dir or GGUF file) and its prompt blend's key, beside the source's own settings
(samples, temperature, filters), so a re-run reuses the traces and a new teacher regenerates them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import pyarrow.parquet as pq

from tinyreason.config.sections import BlendConfig, SourceConfig, TeacherSource
from tinyreason.data import teacher
from tinyreason.data.blend import Blend
from tinyreason.outputs import ModelRef

if TYPE_CHECKING:
    from tinyreason.context import RunContext

log = logging.getLogger(__name__)


@dataclass
class Teacher:
    spec: TeacherSource
    model: ModelRef
    prompts: Blend


@dataclass
class TeacherReader:
    """Serves a blend's teacher sources (the `reader` of data/blend.build_blend)."""

    teachers: dict[int, Teacher]
    # a storage path -> what an actor on any node reads (Storage.located: fetched there from object storage)
    locate: Callable[[str], str] | None = None
    trust_remote_code: bool = False
    made: dict[int, dict] = field(default_factory=dict)

    @property
    def key(self) -> dict:
        return {str(i): {"teacher": t.model.key, "prompts": t.prompts.manifest["key"]}
                for i, t in self.teachers.items()}

    def serves(self, src: SourceConfig) -> bool:
        return src.teacher is not None

    def read(self, src: SourceConfig, index: int):
        """Generate now and materialize: the pool's actors hold their CPUs or GPUs until every
        prompt is answered, and are gone before the blend's own tasks need them."""
        t = self.teachers[index]
        prompts = pq.read_table(t.prompts.data_dir)
        model_dir = self.locate(t.model.path) if self.locate else t.model.path
        log.info("teacher %s answers %s prompts x %d samples", t.model.name, f"{prompts.num_rows:,}",
                 t.spec.num_samples)
        start = time.perf_counter()
        ds = teacher.generate(prompts, t.spec, model_dir, self.trust_remote_code).materialize()
        seconds = time.perf_counter() - start
        stats = ds.select_columns(teacher.STATS).to_pandas()
        tokens, busy = int(stats["_tokens"].sum()), float(stats["_seconds"].sum())
        self.made[index] = {
            "source": index, "model": t.model.name, "path": t.model.path, "key": t.model.key,
            "prompts": {"blend": t.prompts.path.name, "rows": prompts.num_rows},
            "num_samples": t.spec.num_samples, "temperature": t.spec.temperature, "top_p": t.spec.top_p,
            "max_new_tokens": t.spec.max_new_tokens, "filters": t.spec.filters.model_dump(),
            # wall clock from the first actor's start to the last sample, model loads included; and
            # inside generate() alone, summed over actors (what one actor makes per second of work)
            "pairs": t.spec.pairs,
            "generated": int(stats["_samples"].sum()), "tokens": tokens, "seconds": round(seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else 0.0,
            "generate_seconds": round(busy, 2), "tokens_per_actor_s": round(tokens / busy, 1) if busy > 0 else 0.0,
            "actors": {a: int(n) for a, n in stats.groupby("_actor")["_samples"].sum().sort_index().items()},
        }
        log.info("teacher %s: %s samples, %s tokens in %.1f s (%s tokens/s) on %d actors", t.model.name,
                 f"{self.made[index]['generated']:,}", f"{tokens:,}", seconds, f"{tokens / max(seconds, 1e-9):,.0f}",
                 len(self.made[index]["actors"]))
        return ds.drop_columns(teacher.STATS)

    def describe(self) -> dict:
        return {"teachers": [self.made[i] for i in sorted(self.made)]}


def reader_for(ctx: RunContext, blend: BlendConfig, stage_name: str) -> TeacherReader | None:
    """The reader of a blend's teacher sources, or None when it has none. Resolving a teacher may
    convert a GGUF file or fail on one that cannot load, before any generation starts."""
    teachers = {}
    for i, src in enumerate(blend.sources):
        if src.teacher is None:
            continue
        name = f"{blend.name or stage_name}-teacher{i}-prompts"
        prompts = ctx.prompt_blend(BlendConfig(name=name, sources=src.teacher.prompts, max_chars=blend.max_chars))
        teachers[i] = Teacher(src.teacher, ctx.resolve_model(src.teacher.model, f"{stage_name}: teacher source {i}"),
                              prompts)
    if not teachers:
        return None
    return TeacherReader(teachers, ctx.store.located, ctx.cfg.model.trust_remote_code)
