"""What every stage's `train_loop_per_worker` shares: data shard, precision, DeepSpeed
config, TRL arguments, Ray Train reporting, and the Hugging Face export.

These run inside Ray Train workers. Ray Train has already formed the process
group (gloo on CPU, NCCL on GPU) and set RANK / LOCAL_RANK / WORLD_SIZE, which
transformers, accelerate and DeepSpeed all read.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyreason.config import DeepSpeedConfig, StageConfig

METRICS_FILE = "metrics.jsonl"


@dataclass
class StageJob:
    """Everything a worker needs to run one stage; plain data, pickled to each worker."""

    stage: StageConfig
    parent_model: str  # model dir (or hub id) the stage starts from
    tokenizer_dir: str  # prepared by the driver: chat template, <think> tokens
    output_dir: str  # the stage's content-addressed output dir
    trust_remote_code: bool = False
    attn_implementation: str = "sdpa"
    run_name: str = "stage"  # tracking: experiment/stage (or sweep/trial)
    env: dict | None = None  # tracking environment (wandb group, mode, dir); never secrets
    report_every_log: bool = False  # sweeps: every log goes to Ray Train so Tune schedulers see it

    ray_run_dir: str = ""  # where Ray Train keeps this stage's checkpoints (a path or URI)
    storage: Any = None  # tinyreason.storage.Storage: on object storage, inputs are fetched and outputs published

    def local(self, path: str) -> str:
        """An input path (parent model, tokenizer) readable on this worker's node."""
        from tinyreason.storage import localize

        return localize(self.storage, path)

    @property
    def export_dir(self) -> str:
        return str(Path(self.output_dir) / "model")


# --------------------------------------------------------------------------- device


def resolve_precision(ds: DeepSpeedConfig) -> str:
    """bf16 where the GPU supports it (Ampere+), fp32 on CPU.

    On CPU, `auto` stays exact: bf16 only pays on parts with AMX (Sapphire Rapids and
    later; emulated elsewhere, slower than fp32). Measured on an AMX Xeon with the `tiny`
    preset: `precision: bf16` trains 1.26x faster and ends 20 steps 2.6% higher in loss
    (bench/results/trainer_sft_precision.json), a trade to choose, not a default."""
    import torch

    if ds.precision != "auto":
        return ds.precision
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def padding_free(job: StageJob) -> bool:
    """Whether micro-batches are joined into one padding-free sequence (data.padding_free).

    Unset, it follows the attention kernel: on for a varlen one (model/varlen.py)."""
    if job.stage.data.padding_free is not None:
        return job.stage.data.padding_free
    from tinyreason.model.varlen import is_varlen

    return is_varlen(job.attn_implementation)


def avoid_cpu_jit(ds: DeepSpeedConfig) -> None:
    """On CPU, DeepSpeed JIT-compiles a shared-memory all-reduce op on first use (~30 s
    with a C++ toolchain, a crash without one). Gloo all-reduces a 10M-parameter
    gradient in milliseconds, so we mark the op unavailable. DeepSpeed caches this
    dict in its module and reads it on every op lookup."""
    import torch

    if torch.cuda.is_available() or ds.optimizer:
        return
    import deepspeed.ops

    deepspeed.ops.__dict__.setdefault("__compatible_ops__", {})
    deepspeed.ops.__dict__["__compatible_ops__"]["deepspeed_shm_comm"] = False


def deepspeed_config(ds: DeepSpeedConfig, precision: str) -> dict | None:
    """A DeepSpeed ZeRO config; 'auto' values are filled in from the TRL arguments so
    the two never disagree (transformers rejects a mismatch)."""
    if not ds.enabled:
        return None
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.zero_stage >= 2:
        zero.update(overlap_comm=False, contiguous_gradients=True)
    if ds.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # export a whole model, not shards
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    cfg: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16"},
        "steps_per_print": 10**9,  # the trainer logs; DeepSpeed's own prints would duplicate them
    }
    if ds.optimizer:
        cfg["optimizer"] = ds.optimizer
    return cfg


def trl_arguments(cls, job: StageJob, precision: str, **platform: Any):
    """Build SFTConfig / DPOConfig from the stage's TRL settings plus what the platform owns."""
    import torch

    from tinyreason.tracking import report_to

    stage = job.stage
    settings = stage.trainer.to_trl()
    # One local copy: the copies that count are on storage, where Ray keeps the last N
    settings["save_total_limit"] = 1
    ds_cfg = deepspeed_config(stage.deepspeed, precision)
    os.environ.update(job.env or {})
    return cls(
        output_dir=str(Path(job.output_dir) / "trainer"),
        deepspeed=ds_cfg,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        report_to=report_to(job.env or {}),
        run_name=job.run_name,
        save_strategy="steps",
        remove_unused_columns=False,
        dataloader_drop_last=True,  # equal step counts on every rank, or collectives hang
        disable_tqdm=not is_rank_zero(),
        include_num_input_tokens_seen="non_padding",  # summed over ranks: tokens/s is the whole stage's
        **{**settings, **platform},
    )


def begin_worker(config: dict) -> tuple[StageJob, Timeline, str]:
    """The first lines of every stage's loop: pin the device, read the job, pick precision.

    The device comes first, before anything touches CUDA: DeepSpeed and Ray must agree
    on this worker's GPU (see runtime.set_local_device).
    """
    timeline = Timeline()
    from tinyreason.runtime import set_local_device

    device = set_local_device()
    job: StageJob = config["job"]
    Path(job.output_dir).mkdir(parents=True, exist_ok=True)  # on object storage: this node's mirror
    _record_worker(job.output_dir, device)
    avoid_cpu_jit(job.stage.deepspeed)
    timeline.mark("setup")
    return job, timeline, resolve_precision(job.stage.deepspeed)


WORKERS_FILE = "workers.jsonl"


def _record_worker(output_dir: str, device) -> None:
    """One line per worker per attempt: which process on which node trained which rank.
    What an operator reads first when a stage hangs or a node is lost."""
    import socket

    import ray
    import ray.train

    ctx = ray.train.get_context()
    record = {"rank": ctx.get_world_rank(), "local_rank": ctx.get_local_rank(), "pid": os.getpid(),
              "node_id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname(),
              "device": str(device), "time": time.time()}
    _append(output_dir, record, WORKERS_FILE)


# --------------------------------------------------------------------------- inputs


def load_tokenizer_and_model(job: StageJob):
    """The stage's prepared tokenizer and its parent's weights (safetensors only), the
    embedding matrix grown to the tokenizer when the stage added tokens (<think>)."""
    from transformers import AutoTokenizer

    from tinyreason.model.presets import fit_embeddings, load_model

    tok = AutoTokenizer.from_pretrained(job.local(job.tokenizer_dir))
    model = load_model(job.local(job.parent_model), job.trust_remote_code, job.attn_implementation)
    fit_embeddings(model, len(tok))
    return tok, model


# --------------------------------------------------------------------------- data


def shard_name(rank: int) -> str:
    return f"train_{rank}"


def load_shard():
    """This worker's shard of the Ray Dataset, as a map-style HF dataset.

    The driver split the rows into one fixed shard per rank (`launch.fit_stage`); we
    read ours once into memory (a 100k-row packed blend is ~50 MB per worker) so the
    trainer can seek in it: resume skips exactly the batches already seen.
    """
    import datasets
    import ray.train

    shard = ray.train.get_dataset_shard(shard_name(ray.train.get_context().get_world_rank()))
    columns: dict[str, list] = {}
    for batch in shard.iter_batches(batch_size=1024, batch_format="pandas"):
        for col in batch.columns:
            columns.setdefault(col, []).extend(_as_lists(batch[col].tolist()))
    return datasets.Dataset.from_dict(columns)


def _as_lists(values: list) -> list:
    return [v.tolist() if hasattr(v, "tolist") else v for v in values]


def token_budget(train, stage: StageConfig):
    """This rank's batches by tokens (data/batching.py), or None when the stage counts its
    batch in rows. The budget is `data.tokens_per_step`, or with `data.packed_batch: examples`
    per_device_train_batch_size rows at the blend's mean row length. Every rank must take
    the same number of steps or the gradient all-reduce hangs, so all keep the fewest."""
    import ray.train

    from tinyreason.data.batching import TokenBudgetSampler, token_budget_batches

    data, t = stage.data, stage.trainer
    if data.tokens_per_step is None and data.packed_batch == "bins":
        return None
    world = ray.train.get_context().get_world_size()
    lengths = [len(ids) for ids in train["input_ids"]]
    if data.tokens_per_step is not None:
        per_batch, asked = data.tokens_per_step / (world * t.gradient_accumulation_steps), "data.tokens_per_step"
    else:
        rows_per_batch = t.per_device_train_batch_size or 8  # TRL's default when unset
        tokens, rows = _over_ranks([sum(lengths), sum(map(len, train["seq_lengths"]))], world, "SUM")
        per_batch, asked = rows_per_batch * tokens / rows, "per_device_train_batch_size"
        bin_tokens = sum(lengths) / max(1, len(lengths))
        if per_batch < bin_tokens:  # a batch is whole bins: it cannot hold less than one
            raise ValueError(
                f"stage {stage.name}: data.packed_batch=examples with per_device_train_batch_size="
                f"{rows_per_batch} rows of {tokens / rows:.0f} tokens on average is "
                f"{per_batch:.0f} tokens per micro-batch, less than one packed bin ({bin_tokens:.0f} tokens at "
                f"data.max_length={data.max_length}); raise per_device_train_batch_size or lower data.max_length")
    batches = token_budget_batches(lengths, per_batch, seed=t.seed)
    (steps,) = _over_ranks([len(batches)], world, "MIN")
    if steps == 0:
        raise ValueError(f"stage {stage.name}: {asked} asks {per_batch:.0f} tokens per micro-batch but a worker's "
                         f"shard holds {sum(lengths)}; lower {asked} or scaling.num_workers")
    return TokenBudgetSampler(batches[:steps], seed=t.seed)


def _over_ranks(values: list[int], world: int, op: str) -> list[int]:
    """An all-reduce of a few integers (SUM or MIN) over the stage's ranks."""
    if world == 1:
        return values
    import ray.train.torch
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, device=ray.train.torch.get_device())
    dist.all_reduce(t, op=getattr(dist.ReduceOp, op))
    return [int(v) for v in t.tolist()]


def batch_rows(sampler) -> dict:
    """TRL arguments for a token-budget stage: the mean rows per micro-batch stands in for
    per_device_train_batch_size, which DeepSpeed and the Trainer's logs read."""
    return {} if sampler is None else {"per_device_train_batch_size": max(1, round(sampler.mean_rows()))}


def use_local_shard(trainer, sampler=None) -> None:
    """Train on this rank's shard as it is, in `sampler`'s batches when one is given.

    `accelerator.prepare` wraps the batch sampler so each rank sees 1/world of it; our
    rank already holds only its Ray Data shard, so the wrapper would drop (world-1)/world
    of the data. We make the wrapper a pass-through, the same fix transformers applies to
    its own rank-aware samplers. A token-budget sampler learns the epoch from a callback:
    the Trainer's own `set_epoch` does not reach it through accelerate's resume wrapper.
    """
    base = trainer.get_train_dataloader

    def get_train_dataloader():
        loader = base() if sampler is None else trainer.accelerator.prepare(_loader(trainer, sampler))
        wrapper = getattr(loader, "batch_sampler", None)
        if wrapper is not None and hasattr(wrapper, "num_processes"):
            wrapper.num_processes, wrapper.process_index = 1, 0
        return loader

    trainer.get_train_dataloader = get_train_dataloader
    if sampler is not None:
        from transformers import TrainerCallback

        class SamplerEpoch(TrainerCallback):
            def on_epoch_begin(self, args, state, control, **kwargs):
                sampler.set_epoch(int(state.epoch or 0))  # resumed mid-epoch e: e + fraction

        trainer.add_callback(SamplerEpoch())


def _loader(trainer, sampler):
    from torch.utils.data import DataLoader

    a = trainer.args
    return DataLoader(trainer.train_dataset, batch_sampler=sampler, collate_fn=trainer.data_collator,
                      num_workers=a.dataloader_num_workers, pin_memory=a.dataloader_pin_memory)


# --------------------------------------------------------------------------- reporting


class Timeline:
    """Wall-clock marks from worker start to the first optimizer step: where start-up goes."""

    def __init__(self):
        self.t0 = self.last = time.perf_counter()
        self.phases: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = round(now - self.last, 3)
        self.last = now


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


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
    import torch

    from tinyreason.model.flops import flops_per_token, mfu, peak_flops

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
    reports checkpoints to Ray Train, and closes the start-up timeline. `layout` (how the
    batch reached the model) rides on the start-up event into the stage summary."""
    import ray.train
    from ray.train import CheckpointUploadMode
    from transformers import TrainerCallback

    from tinyreason.train import checkpoints

    output_dir, policy = job.output_dir, job.stage.checkpoints
    upload = CheckpointUploadMode.ASYNC if policy.upload == "async" else CheckpointUploadMode.SYNC

    class RayReport(TrainerCallback):
        def __init__(self):
            self.rate, self.last_logs, self.utilisation = TokenRate(), {}, None
            self.window = checkpoints.MetricWindow(policy.metric)
            self.saved_step = None

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if timeline:
                timeline.mark("trainer_setup")  # DeepSpeed engine, optimizer, scheduler, dataloader
            self.utilisation = gpu_utilisation(model, job.stage.data.max_length, args)

        def on_step_end(self, args, state, control, **kwargs):
            if timeline and "first_step" not in timeline.phases:
                timeline.mark("first_step")  # the first step of this attempt (a resumed one starts later)
                if is_rank_zero():
                    _append(output_dir, {"event": "startup", "step": state.global_step, **(layout or {}),
                                         **timeline.phases,
                                         "to_first_step": round(time.perf_counter() - timeline.t0, 3)})

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = self.rate.annotate(state, logs)
            if self.utilisation and "tokens_per_s" in logs:
                logs.update(self.utilisation(logs["tokens_per_s"]))
            bad = [k for k in ("loss", "grad_norm") if k in logs and not math.isfinite(float(logs[k]))]
            if bad:
                last_good = (f"the last good checkpoint is step {self.saved_step}, the latest under {job.ray_run_dir}"
                             if self.saved_step else "no checkpoint was saved before it")
                raise FloatingPointError(
                    f"non-finite {bad[0]}={logs[bad[0]]} at step {state.global_step}; {last_good}. Lower the "
                    "learning rate or max_grad_norm; the exported model is not written"
                )
            self.last_logs = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
            self.window.add(self.last_logs)
            if is_rank_zero():
                _append(output_dir, logs)
            if job.report_every_log:
                ray.train.report({**self.last_logs})

        # Ray Train's report is a barrier across workers (~0.3 s on 2 CPU workers), so it is
        # called when there is a checkpoint to register, not at every log line.
        def on_save(self, args, state, control, **kwargs):
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            value = self.window.take()
            checkpoint = None
            if ckpt.exists():
                if is_rank_zero():
                    checkpoints.write_info(ckpt, state.global_step, policy.metric, value)
                snapshot = checkpoints.stage_for_upload(ckpt, int(os.environ.get("RANK", "0")))
                checkpoint = ray.train.Checkpoint.from_directory(str(snapshot))
                self.saved_step = state.global_step
            ray.train.report({**self.last_logs, "step": state.global_step}, checkpoint=checkpoint,
                             checkpoint_upload_mode=upload, delete_local_checkpoint_after_upload=True)

        def on_train_end(self, args, state, control, **kwargs):
            ray.train.report({**self.last_logs, "step": state.global_step, "train_finished": 1})  # "done" is Tune's stop signal
            if is_rank_zero():  # Ray kills the worker when the loop returns: close the wandb run first
                from tinyreason.tracking import finish_run

                finish_run()

    return RayReport()


def _append(output_dir: str, record: dict, name: str = METRICS_FILE) -> None:
    with open(Path(output_dir) / name, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(output_dir: str | Path, name: str = METRICS_FILE) -> list[dict]:
    path = Path(output_dir) / name
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --------------------------------------------------------------------------- resume


def resume_checkpoint(fallback: str | None = None) -> str | None:
    """The checkpoint this attempt resumes from: Ray Train's latest reported one.

    After a worker fault Ray Train restarts the worker group and hands back the
    last checkpoint; after a driver fault a new TorchTrainer with the same run name
    and storage restores the same bookkeeping. The Hugging Face checkpoint inside
    holds optimizer, scheduler, RNG and trainer state (global step, data position),
    so training continues at the step it reached, not at the start of the epoch.
    """
    import ray.train

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return fallback
    path = Path(ckpt.path)
    if path.exists() and (path / "trainer_state.json").exists():
        return str(path)  # local or shared storage: read in place
    return ckpt.to_directory()


# --------------------------------------------------------------------------- export


def export_model(trainer, tok, job: StageJob) -> None:
    """Save the stage's model as a Hugging Face dir (safetensors + tokenizer + template).

    Every rank calls this: under ZeRO-3 the weights are gathered collectively.
    """
    trainer.save_model(job.export_dir)  # safe_serialization is the transformers 5 default
    if is_rank_zero():
        # training_args.bin is a pickle; the manifest holds the same settings as JSON
        (Path(job.export_dir) / "training_args.bin").unlink(missing_ok=True)
        tok.save_pretrained(job.export_dir)
        trainer.model.generation_config.save_pretrained(job.export_dir)
        # On object storage the driver and the next stage read these from there, not from this node
        from tinyreason.storage import publish

        publish(job.storage, job.export_dir)
        for name in (METRICS_FILE, WORKERS_FILE):
            if (Path(job.output_dir) / name).exists():
                publish(job.storage, Path(job.output_dir) / name)
