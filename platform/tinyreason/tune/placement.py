"""Releasing the workers of a sweep trial that Tune's scheduler stopped mid-training.

Tune ends a stopped trial's actor, and the Ray Train controller it owns dies with it before
it can remove its workers' placement group. Ray Train's own cleaner finds a dead controller
through the State API, which needs the dashboard; without it (a local Ray from runtime.init_ray,
the tests' Ray) the group, all 2 CPUs of a 2-core box, is never released and the next trial
waits forever. There stages launch without Ray's cleaner at all (train/compat.torch_trainer),
and this guard, which asks the controller's actor handle rather than the State API, does its
work for the trials a scheduler stops.
"""

from __future__ import annotations

import time

import ray
from ray.util.placement_group import placement_group_table, remove_placement_group

from tinyreason.train import compat


class _PlacementGroupWatcher:
    """A detached actor that outlives one Train controller: when the controller is gone
    (an actor handle that no longer answers), it removes the placement groups it guarded."""

    def __init__(self, controller):
        self.controller, self.groups = controller, []

    def guard(self, pg) -> None:
        self.groups.append(pg)

    def watch(self) -> None:
        while True:
            try:
                ray.get(self.controller.__ray_ready__.remote(), timeout=10)
            except ray.exceptions.GetTimeoutError:
                continue  # alive, busy
            except ray.exceptions.RayActorError:
                break
            time.sleep(1)
        for pg in self.groups:
            if placement_group_table(pg).get("state", "REMOVED") != "REMOVED":
                remove_placement_group(pg)
        ray.actor.exit_actor()


def placement_group_guard():
    """A Ray Train callback that hands the trial's controller and its workers' placement group
    to a detached watcher, which removes the group once the controller is gone."""
    controller_callback, worker_group_callback = compat.train_controller_hooks()

    class PlacementGroupGuard(controller_callback, worker_group_callback):
        # No stop hook: a controller's last shutdown steps can race its owner's exit, so
        # the watcher always waits for the controller to be gone (removing is idempotent).
        watcher = None

        def after_controller_start(self, train_run_context):
            controller = ray.get_runtime_context().current_actor
            # DEFAULT: not inside the trial's placement group, which Tune removes (killing
            # everything in it) when it stops the trial
            self.watcher = ray.remote(_PlacementGroupWatcher).options(
                num_cpus=0, lifetime="detached", max_concurrency=2, scheduling_strategy="DEFAULT").remote(controller)
            self.watcher.watch.remote()

        def after_worker_group_start(self, worker_group):
            if self.watcher is not None:
                self.watcher.guard.remote(compat.placement_group_of(worker_group))

    return PlacementGroupGuard()
