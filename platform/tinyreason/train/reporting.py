"""What a training worker tells the world: every log line into the stage's metrics.jsonl
(rank 0), checked finite and time-stamped; checkpoints reported to Ray Train, every
save_steps, every checkpoints.every_minutes and on notice (train/notice.py); tokens/s and
MFU; progress for the driver's console; the start-up timeline."""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path

import ray.train
import torch
from ray.train import CheckpointUploadMode
from transformers import TrainerCallback

from tinyreason.model.flops import flops_per_token, mfu, peak_flops
from tinyreason.tracking import finish_run, log_provenance
from tinyreason.train import checkpoints, notice
from tinyreason.train.job import StageJob
from tinyreason.train.worker import Timeline, is_rank_zero


class TokenRate:
    """Tokens per second between consecutive logs, from the trainer's own token count
    (non-padding tokens, summed over ranks). Benchmarks use the same rule for baselines."""

    def __init__(self):
        self.t_last, self.tokens_last = time.perf_counter(), 0

    def annotate(self, state, logs: dict | None) -> dict:
        """`logs` plus `tokens_per_s` (when tokens moved) and `step`."""
        logs = dict(logs or {})
        now = time.perf_counter()
        tokens = getattr(state, "num_input_tokens_seen", 0) or logs.get("num_tokens", 0)
        if tokens and now > self.t_last:
            logs["tokens_per_s"] = (tokens - self.tokens_last) / (now - self.t_last)
            self.t_last, self.tokens_last = now, tokens
        logs["step"] = state.global_step
        return logs


def gpu_utilisation(model, seq_len: int, args):
    """On GPU, a function from the stage's tokens/s (summed over ranks) to its MFU in both
    conventions (model/flops.py); None on CPU or an unknown GPU."""
    if model is None or not torch.cuda.is_available():
        return None
    precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
    peak = peak_flops(torch.cuda.get_device_name(), precision)
    if peak is None:
        return None
    n_params = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())  # ZeRO-3 holds shards
    per_token = flops_per_token(n_params, model.config.num_hidden_layers, model.config.hidden_size, seq_len)
    devices = int(os.environ.get("WORLD_SIZE", "1"))
    return lambda tokens_per_s: {k: round(v, 4) for k, v in mfu(tokens_per_s, per_token, peak, devices).items()}


def make_report_callback(job: StageJob, timeline: Timeline | None = None, layout: dict | None = None):
    """A TrainerCallback that appends every log to metrics.jsonl, checks it is finite,
    reports checkpoints to Ray Train, posts progress to the driver, and closes the start-up
    timeline. `layout` (how the batch reached the model) rides on the start-up event into
    the stage summary."""
    output, policy = job.output, job.stage.checkpoints
    upload = CheckpointUploadMode.ASYNC if policy.upload == "async" else CheckpointUploadMode.SYNC

    class RayReport(TrainerCallback):
        def __init__(self):
            self.rate, self.last_logs, self.utilisation = TokenRate(), {}, None
            self.window = checkpoints.MetricWindow(policy.metric)
            self.saved_step = None
            self.posted = 0.0  # when progress last went to the driver
            self.check, self.decision = notice.StepCheck(policy.every_minutes, policy.on_notice), notice.Decision()

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if timeline:
                timeline.mark("trainer_setup")  # DeepSpeed engine, optimizer, scheduler, dataloader
            self.utilisation = gpu_utilisation(model, job.stage.data.max_length, args)
            if is_rank_zero():
                log_provenance(job.provenance)  # WandbCallback, called before this one, has started the run
            self.check.start()

        def post_progress(self, state, force: bool = False) -> None:
            # Fire and forget, at most once a second: the driver's bar needs no more, and a
            # Ray call per step would cost the loop more than it draws.
            if job.progress is None or not is_rank_zero() or (time.monotonic() - self.posted < 1 and not force):
                return
            self.posted = time.monotonic()
            job.progress.post(state.global_step, state.max_steps, self.last_logs.get("loss"))

        def on_step_end(self, args, state, control, **kwargs):
            self.post_progress(state)
            if timeline and "first_step" not in timeline.phases:
                timeline.mark("first_step")  # the first step of this attempt (a resumed one starts later)
                if is_rank_zero():
                    output.append({"event": "startup", "step": state.global_step, **(layout or {}),
                                   "world_size": self.check.world, "gradient_accumulation_steps":
                                   args.gradient_accumulation_steps, **timeline.phases,
                                   "to_first_step": round(time.perf_counter() - timeline.t0, 3), "time": time.time()})
                if int(os.environ.get("LOCAL_RANK", "0")) == 0:  # every rank has loaded the resume by now
                    shutil.rmtree(output.trainer_dir / "elastic", ignore_errors=True)
            self.decision = self.check.at_step_end()
            if self.decision.save:
                control.should_save = True
            elif (state.global_step >= state.max_steps and not policy.at_end
                  and state.global_step % state.save_steps != 0):
                control.should_save = False  # set by transformers for the last step (checkpoints.at_end)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = self.rate.annotate(state, logs)
            if self.utilisation and "tokens_per_s" in logs:
                logs.update(self.utilisation(logs["tokens_per_s"]))
            bad = [k for k in ("loss", "grad_norm") if k in logs and not math.isfinite(float(logs[k]))]
            if bad:
                last_good = (f"the last good checkpoint is step {self.saved_step}, the latest under "
                             f"ray/{output.name} in storage"
                             if self.saved_step else "no checkpoint was saved before it")
                raise FloatingPointError(
                    f"non-finite {bad[0]}={logs[bad[0]]} at step {state.global_step}; {last_good}. Lower the "
                    "learning rate or max_grad_norm; the exported model is not written"
                )
            self.last_logs = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
            self.window.add(self.last_logs)
            if is_rank_zero():
                output.append({**logs, "time": round(time.time(), 3)})  # cost.py dates attempts by it
            if job.report_every_log:
                ray.train.report({**self.last_logs})

        # Ray Train's report is a barrier across workers (~0.3 s on 2 CPU workers), so it is
        # called when there is a checkpoint to register, not at every log line.
        def on_save(self, args, state, control, **kwargs):
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            value = self.window.take()
            decision, self.decision = self.decision, notice.Decision()
            checkpoint = None
            if ckpt.exists():
                if is_rank_zero():
                    checkpoints.write_info(ckpt, state.global_step, policy.metric, value, self.check.world,
                                           decision.cause if decision.save else "save_steps")
                snapshot = checkpoints.stage_for_upload(ckpt, int(os.environ.get("RANK", "0")))
                checkpoint = ray.train.Checkpoint.from_directory(str(snapshot))
                self.saved_step = state.global_step
            # on notice the process is about to go: upload before reporting, not in the background
            mode = CheckpointUploadMode.SYNC if decision.stop else upload
            ray.train.report({**self.last_logs, "step": state.global_step}, checkpoint=checkpoint,
                             checkpoint_upload_mode=mode, delete_local_checkpoint_after_upload=True)
            self.check.saved()
            if decision.stop:
                self.check.all_reported()  # the peers' reports are in before this rank ends the attempt
                if is_rank_zero():
                    output.append({"event": "notice", "cause": decision.stop, "step": state.global_step,
                                   "time": time.time()})
                raise notice.Preempted(f"stopped at step {state.global_step} on notice ({decision.stop}) after "
                                       f"checkpointing it; Ray Train resumes the stage from there")

        def on_train_end(self, args, state, control, **kwargs):
            self.check.end()
            self.post_progress(state, force=True)
            # "train_finished", not "done": "done" is Tune's stop signal
            ray.train.report({**self.last_logs, "step": state.global_step, "train_finished": 1})
            if is_rank_zero():  # Ray kills the worker when the loop returns: close the wandb run first
                finish_run()

    return RayReport()


