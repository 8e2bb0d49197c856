"""Checkpoint on notice, and checkpoints by the clock.

A spot node is taken back after a short notice, and the processes on it get SIGTERM first
(so does every Ray worker on `ray stop`). A training worker that gets it saves a checkpoint
at the step it is on, reports it, and ends the attempt; Ray Train restarts the stage from
exactly that step, so no optimizer step is lost. Ray Train's own notice of a draining node
(`ray.train.get_preemption_info`, from Ray's PreemptionWatcher) is taken the same way.

DeepSpeed saves collectively: every rank must save the same step, and a signal reaches one
process. So each rank only raises a flag, and at every step end the ranks agree with one
all-reduce (MAX) of three small integers on a CPU (gloo) group, which costs no GPU sync:

    [a notice on any rank, rank 0's clock says a timed checkpoint is due,
     rank 0's clock says it is time to ask Ray about drains (every DRAIN_POLL_S)]

The handler is installed on the worker's main thread (Python delivers signals there; the
training loop runs in another thread) by a Ray Train worker callback (launch.py). It only
records the notice. A second SIGTERM, a SIGTERM outside training, or a save that is not done
GRACE_S after the notice (a peer is already gone and the collective hangs) gets Ray's own
handling: the worker exits.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass

import ray.train
import torch
import torch.distributed as dist

# How often rank 0 asks Ray Train about draining nodes: its watcher polls Ray every 5 s, and each
# question is a round trip through Ray Train's synchronization actor (a few ms).
DRAIN_POLL_S = 5.0
# How long a notice may take to become a saved checkpoint before Ray's own SIGTERM handling
# (exit) takes over: systemd kills what is left 90 s after SIGTERM at shutdown.
GRACE_S = 75.0


class Preempted(RuntimeError):
    """Raised on every rank after the checkpoint on notice is reported: the attempt ends, and
    Ray Train restarts the stage from that checkpoint (scaling.max_failures must allow it)."""


class _Notice:
    """This process's notice: set by the signal handler, read at step ends."""

    def __init__(self):
        self.cause: str | None = None
        self.at: float | None = None
        self.training = False  # a training loop is running that can save (set by the report callback)
        self.previous = signal.SIG_DFL
        self.watchdog: threading.Timer | None = None

    def handle(self, signum, frame) -> None:
        if self.cause is not None or not self.training:
            return self.chain(signum, frame)  # a second signal, or nothing to save: exit as Ray would
        self.cause, self.at = signal.Signals(signum).name, time.time()
        # if the save never happens (a peer died and the collective hangs), the second signal exits
        self.watchdog = threading.Timer(GRACE_S, os.kill, (os.getpid(), signum))
        self.watchdog.daemon = True
        self.watchdog.start()

    def clear(self) -> None:
        """Forget the notice (a new attempt in a process that survived one, and tests)."""
        if self.watchdog is not None:
            self.watchdog.cancel()
        self.cause = self.at = self.watchdog = None

    def chain(self, signum, frame) -> None:
        previous = self.previous
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


NOTICE = _Notice()


def install() -> None:
    """Take SIGTERM for the notice. Must run on the worker process's main thread."""
    current = signal.getsignal(signal.SIGTERM)
    if current != NOTICE.handle:
        NOTICE.previous = current
        signal.signal(signal.SIGTERM, NOTICE.handle)


def received() -> str | None:
    """What this process was told (SIGTERM), or None."""
    return NOTICE.cause


@dataclass
class Decision:
    save: bool = False  # save a checkpoint at this step
    stop: str | None = None  # then end the attempt: the notice's cause
    cause: str = "save_steps"  # why this step is saved: every_minutes, or the notice


class StepCheck:
    """What the ranks agree on at each step end: save now (timed), or save and stop (notice)."""

    def __init__(self, every_minutes: float | None, on_notice: bool):
        self.every_s = every_minutes * 60 if every_minutes else None
        self.on_notice = on_notice
        self.world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self.rank = dist.get_rank() if self.world > 1 else 0
        self.group = None
        self.last_save = self.last_poll = time.monotonic()

    def start(self) -> None:
        """At train begin, on every rank: a CPU group for the flags where the default one is
        NCCL (creating a group is itself collective), and the notice armed."""
        if self.world > 1 and dist.get_backend() != "gloo":
            self.group = dist.new_group(backend="gloo")
        NOTICE.training = self.on_notice

    def end(self) -> None:
        NOTICE.training = False

    def saved(self) -> None:
        self.last_save = time.monotonic()

    def all_reported(self) -> None:
        """Wait here until every rank has reported the checkpoint on notice. Ray Train registers a
        checkpoint once all ranks have reported it, and restarts the group at the first rank's
        error: a rank that ended the attempt while a peer was still uploading lost the checkpoint,
        and the stage resumed a step early (seen once under load in tests/ray/test_faults.py)."""
        if self.world > 1:
            dist.barrier(group=self.group)

    def at_step_end(self) -> Decision:
        if not self.on_notice and not self.every_s:
            return Decision()  # nothing to agree on (the same on every rank: one config)
        now = time.monotonic()
        flags = [1 if (self.on_notice and received()) else 0,
                 1 if self.rank == 0 and self.every_s and now - self.last_save >= self.every_s else 0,
                 1 if self.rank == 0 and self.on_notice and now - self.last_poll >= DRAIN_POLL_S else 0]
        if self.world > 1:
            t = torch.tensor(flags, dtype=torch.int32)
            dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.group)
            flags = t.tolist()
        notice, due, poll = flags
        cause = received() or "a notice on another worker"
        if poll:
            self.last_poll = now
            if ray.train.get_preemption_info() is not None:  # a collective: every rank asks, in step
                notice, cause = 1, "Ray drain notice"
        if notice:
            return Decision(save=True, stop=cause, cause=f"notice ({cause})")
        if due:
            return Decision(save=True, cause="every_minutes")
        return Decision()
