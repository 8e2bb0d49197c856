"""What every step of a run shares on the driver: the validated config, where outputs live,
the evaluation sets blends are cleaned against, and tracking.

A curriculum builds one `RunContext`; a sweep builds one for its curriculum; a study one
per arm. The decontamination index is built once per context (the first blend asks for
it), not once per stage.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field

from tinyreason import refs, teachers
from tinyreason.config.experiment import ExperimentConfig, StageConfig
from tinyreason.config.references import teacher_refs
from tinyreason.config.sections import BlendConfig
from tinyreason.data.blend import Blend, build_blend
from tinyreason.data.decontam import Decontaminator
from tinyreason.eval.sets import decontaminator_for
from tinyreason.lineage import TrainedBy
from tinyreason.locks import Locks
from tinyreason.outputs import ModelRef, Outputs, StageOutput, digest
from tinyreason.storage import Storage
from tinyreason.tracking import wandb_env
from tinyreason.train import registry


@dataclass
class RunContext:
    cfg: ExperimentConfig
    store: Storage
    group: str | None = None  # the tracking group: the experiment, or sweep/<name>
    locks: Locks | None = None  # shared with curricula running beside this one (a study's arms)
    owner: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    # the libraries and platform code that train this run's stages: part of every stage key,
    # computed once per context (reading the import graph takes ~1 s)
    trained_by: TrainedBy = field(default_factory=TrainedBy, repr=False)
    # The models of this run by name: the base and every stage finished so far (stage.run_stage
    # adds each), what `parent:` and teacher references resolve to
    models: dict[str, ModelRef] = field(default_factory=dict)
    _decontaminate: Decontaminator | None = field(default=None, repr=False)
    _decontaminate_built: bool = field(default=False, repr=False)

    @classmethod
    def of(cls, cfg: ExperimentConfig, store: Storage | None = None, group: str | None = None,
           locks: Locks | None = None) -> RunContext:
        return cls(cfg, store or Storage(cfg.storage.path), group, locks)

    def exclusive(self, key: str):
        """Held while this run builds something other runs may need too (a blend, a stage, an
        evaluation): they wait, then find it complete. A no-op for a run on its own."""
        return self.locks.hold(key, self.owner) if self.locks is not None else contextlib.nullcontext()

    @property
    def outputs(self) -> Outputs:
        return Outputs(self.store)

    @property
    def decontaminate(self) -> Decontaminator | None:
        if not self._decontaminate_built:
            self._decontaminate = decontaminator_for(self.cfg.evaluation)
            self._decontaminate_built = True
        return self._decontaminate

    def blend(self, stage: StageConfig) -> Blend:
        """A stage's blend, decontaminated against every evaluation set of the experiment (the
        set's key enters the blend's cache key, so changing the suite rebuilds the blends).
        On object storage it is published, since Ray Data's read tasks run on any node."""
        schema = registry.get(stage.kind).schema
        lock = f"blend/{digest([stage.data.blend_config.model_dump(mode='json'), schema, self.cfg.seed])}"
        with self.exclusive(lock):  # a study's arms sharing a blend build it once
            reader = teachers.reader_for(self, stage.data.blend_config, stage.name)
            blend = build_blend(stage.data.blend_config, schema, self.outputs.blends_dir, seed=self.cfg.seed,
                                decontaminate=self.decontaminate, think=stage.data.think_rows, reader=reader)
        return self._shared(blend)

    def prompt_blend(self, blend: BlendConfig) -> Blend:
        """A teacher source's prompts: an ordinary blend of prompt rows, decontaminated like any."""
        return self._shared(build_blend(blend, "prompt", self.outputs.blends_dir, seed=self.cfg.seed,
                                        decontaminate=self.decontaminate))

    def _shared(self, blend: Blend) -> Blend:
        if self.store.is_remote:
            if not self.store.exists(f"blends/{blend.path.name}/manifest.json"):
                self.store.publish(blend.path, marker="manifest.json")
            blend.store = self.store
        return blend

    def resolve_model(self, ref: str, who: str) -> ModelRef:
        """The model a reference names (tinyreason/refs.py). A stage of this experiment resolves to
        its export in this run or, outside a run (jobs/build_blends.py), to the one its last run
        recorded; `who` names the reader in errors."""
        names = {refs.BASE, *(s.name for s in self.cfg.stages)}
        if ref in names and ref not in self.models:
            record = self.outputs.run(self.cfg.name).stages_record().get(ref)
            out = StageOutput(self.store, record["dir"]) if record else None
            if out is None or not out.complete():
                raise ValueError(f"{who}: teacher {ref!r} is a stage of this experiment that has not been trained; "
                                 "run the curriculum (jobs/curriculum.py), which trains it first")
            return out.model_ref(ref, record["key"])
        try:
            return refs.resolve(ref, self.models, self.outputs, self.cfg.model.trust_remote_code)
        except ValueError as e:
            raise ValueError(f"{who}: the teacher cannot be loaded: {e}") from None

    def check_references(self) -> None:
        """Hub models named as teachers load on this machine: a clear error before stage 1, not
        after hours of training. Stages, dirs and GGUF files were checked with the config."""
        names = {refs.BASE, *(s.name for s in self.cfg.stages)}
        for stage in self.cfg.stages:
            for field_name, ref in teacher_refs(stage):
                if refs.kind_of(ref, names) == refs.HUB:
                    try:
                        refs.check_loadable(ref, self.cfg.model.trust_remote_code)
                    except ValueError as e:
                        raise ValueError(f"stage {stage.name}: {field_name}: {e}") from None

    def tracking_env(self, tags: list[str]) -> dict[str, str]:
        return wandb_env(self.cfg.tracking, self.store.local_root, group=self.group or self.cfg.name, tags=tags)
