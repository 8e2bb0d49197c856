"""Named locks across Ray tasks: several curricula running at once (a study's arms) take
turns on what they share, so a stage, a blend or an evaluation they have in common is
built once and then reused from storage by the others."""

from __future__ import annotations

import contextlib
import time

import ray

POLL_S = 1.0  # waiting on a held lock costs one small actor call a second


class _Locks:
    def __init__(self):
        self.held: dict[str, str] = {}

    def acquire(self, key: str, owner: str) -> bool:
        if self.held.get(key, owner) != owner:
            return False
        self.held[key] = owner
        return True

    def release(self, key: str, owner: str) -> None:
        if self.held.get(key) == owner:
            del self.held[key]


class Locks:
    """A handle on one lock table (a Ray actor); picklable into the tasks that share it."""

    def __init__(self, actor=None):
        self.actor = actor if actor is not None else ray.remote(num_cpus=0)(_Locks).remote()

    @contextlib.contextmanager
    def hold(self, key: str, owner: str):
        while not ray.get(self.actor.acquire.remote(key, owner)):
            time.sleep(POLL_S)
        try:
            yield
        finally:
            self.actor.release.remote(key, owner)
