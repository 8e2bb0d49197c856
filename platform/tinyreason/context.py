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

from tinyreason.config.experiment import ExperimentConfig, StageConfig
from tinyreason.data.blend import Blend, build_blend
from tinyreason.data.decontam import Decontaminator
from tinyreason.eval.sets import decontaminator_for
from tinyreason.lineage import TrainedBy
from tinyreason.locks import Locks
from tinyreason.outputs import Outputs, digest
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
        with self.exclusive(lock):
            blend = build_blend(stage.data.blend_config, schema, self.outputs.blends_dir, seed=self.cfg.seed,
                                decontaminate=self.decontaminate, think=stage.data.think_rows)
        if self.store.is_remote:
            if not self.store.exists(f"blends/{blend.path.name}/manifest.json"):
                self.store.publish(blend.path, marker="manifest.json")
            blend.store = self.store
        return blend

    def tracking_env(self, tags: list[str]) -> dict[str, str]:
        return wandb_env(self.cfg.tracking, self.store.local_root, group=self.group or self.cfg.name, tags=tags)
