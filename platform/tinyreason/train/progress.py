"""Training progress from rank 0 to the driver's console, through one small Ray actor.

Workers may run on any node, so progress cannot be read from their files; Ray Train's own
report is a barrier across workers and is kept for checkpoints. One actor per driver (no
CPU reserved) holds the latest step of each stage; rank 0 posts to it at most once a
second and the console polls it.
"""

from __future__ import annotations

import ray


class _Board:
    def __init__(self):
        self.state: dict[str, dict] = {}

    def post(self, stage: str, step: int, total: int, loss: float | None) -> None:
        self.state[stage] = {"step": step, "total": total, "loss": loss}

    def read(self, stage: str) -> dict | None:
        return self.state.get(stage)


class ProgressBoard:
    """A handle on the driver's board, bound to one stage; picklable into a StageJob."""

    def __init__(self, actor, stage: str):
        self.actor, self.stage = actor, stage

    @classmethod
    def create(cls, stage: str, actor=None) -> ProgressBoard:
        if actor is None:
            actor = ray.remote(num_cpus=0)(_Board).remote()
        return cls(actor, stage)

    def for_stage(self, stage: str) -> ProgressBoard:
        return ProgressBoard(self.actor, stage)

    def post(self, step: int, total: int, loss: float | None) -> None:
        self.actor.post.remote(self.stage, step, total, loss)

    def read(self, timeout: float = 2.0) -> dict | None:
        try:
            return ray.get(self.actor.read.remote(self.stage), timeout=timeout)
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError):
            return None
