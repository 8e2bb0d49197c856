"""The driver-worker contract of a stage: the driver builds one `StageJob` (plain data,
pickled to each Ray Train worker); a worker's loop starts with `worker.begin_worker(config)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from tinyreason.outputs import StageOutput
from tinyreason.train.progress import ProgressBoard

if TYPE_CHECKING:
    from tinyreason.config.experiment import StageConfig


@dataclass
class StageJob:
    """Everything a worker needs to run one stage."""

    stage: StageConfig
    parent_model: str  # the model dir (or hub id) the stage starts from, as the driver sees it
    tokenizer_dir: str  # prepared by the driver: chat template, <think> tokens
    output: StageOutput  # the stage's directory: logs, the export, Ray Train's checkpoint location
    trust_remote_code: bool = False
    attn_implementation: str = "sdpa"
    run_name: str = "stage"  # tracking: experiment/stage (or sweep/trial)
    env: dict | None = None  # tracking environment (wandb group, mode, dir); never secrets
    report_every_log: bool = False  # sweeps: every log goes to Ray Train so Tune schedulers see it
    progress: ProgressBoard | None = None  # where rank 0 posts its step for the driver's progress bar
    parent_revision: str | None = None  # a hub parent's pinned revision (model.revision)
    provenance: dict | None = None  # what trained it (versions, code, git, seed): rank 0 logs it to wandb's config
    # machine.environment, handed over by the driver (pickled by name): rank 0 writes what it
    # returns to environment.json. Passed, not imported, so the recording code stays out of the
    # training code's fingerprint: describing machines better must not retrain every stage.
    describe: Callable[[], dict] | None = None
    inputs: dict[str, str] = field(default_factory=dict)  # other models the kind reads, by role (StageKind.inputs)

    def local(self, path: str) -> str:
        """An input path (parent model, tokenizer) readable on this worker's node."""
        return self.output.store.localize(path)

    @property
    def export_dir(self) -> str:
        return str(self.output.model_dir)
