"""The few places where the platform needs a library's private API, and no public one exists.

Each adapter names the versions it was written against; `check()` fails with the fix when an
installed version moved past them (tests/unit/test_compat.py runs it), so an upgrade breaks
here, in one place, and not deep inside a training worker.

    DeepSpeed   skip the JIT build of its shared-memory all-reduce on CPU (no switch for it);
                skip the gradient all-reduce of a one-rank ZeRO stage 0 engine (no switch either);
                compile Muon's update functions when first called, not when ZeRO imports it
    TRL         a DPO trainer that takes rows tokenized on Ray Data and shared reference log-probs;
                GRPO's share of groups without reward spread, measured where float32 rounding hides it
    TRL x peft  TRL's fused LM head reading a tied head that peft wraps for new tokens' rows
    Ray Train   controller and worker-group hooks, to release a stopped sweep trial's workers;
                a worker hook, to install the SIGTERM notice handler on a worker's main thread;
                no placement-group cleaner where Ray's state API, which it polls, is not served
    wandb       no import of wandb Launch at every run's start where no Launch inputs were staged
"""

from __future__ import annotations

import functools
import sys
from importlib.metadata import version

import deepspeed.ops
import ray
import torch
from deepspeed.runtime import compiler
from deepspeed.runtime.engine import DeepSpeedEngine
from peft.utils import TrainableTokensWrapper
from ray.train.torch import TorchTrainer
from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
from ray.train.v2._internal.execution.callback import ControllerCallback, WorkerCallback, WorkerGroupCallback
from ray.util.state import list_nodes
from ray.util.state.exception import RayStateApiException
from transformers import TrainerCallback
from trl import DPOTrainer

# library -> the version prefix the adapters below were written and tested against
WRITTEN_FOR = {"deepspeed": "0.19.", "trl": "1.16.", "peft": "0.21.", "ray": "2.60.", "wandb": "0.31."}


def check() -> None:
    """Every adapter's assumption still holds in the installed libraries, or a ValueError naming
    the library, the version and what to re-check."""
    moved = [f"{lib} {version(lib)} (written for {prefix}x)" for lib, prefix in WRITTEN_FOR.items()
             if not version(lib).startswith(prefix)]
    if moved:
        raise ValueError(f"train/compat.py adapts private APIs of {', '.join(moved)}; re-check each adapter "
                         "against the installed source and update WRITTEN_FOR")


# --------------------------------------------------------------------------- DeepSpeed


def skip_deepspeed_shm_comm() -> None:
    """On CPU, DeepSpeed JIT-compiles a shared-memory all-reduce op on first use (~30 s
    with a C++ toolchain, a crash without one). Gloo all-reduces a 10M-parameter gradient
    in milliseconds, so we mark the op unavailable. `deepspeed.ops.__compatible_ops__` is
    computed on first access by probing every op (compiler subprocesses); seeding the
    module's dict first skips that probe, and DeepSpeed reads the dict on every op lookup
    (deepspeed/comm/torch.py, build_shm_op)."""
    ops = deepspeed.ops.__dict__.setdefault("__compatible_ops__", {})
    ops["deepspeed_shm_comm"] = False


def one_rank_skips_allreduce(trainer) -> None:
    """A one-rank ZeRO stage 0 engine all-reduces its gradients anyway: every step it flattens
    them into one buffer, all-reduces it over a group of one, divides by 1 and copies them back.
    On a CPU worker training a SmolLM2-135M-shaped model that is ~0.2-0.36 s of a ~4 s step
    (cProfile: `allreduce_no_retain`) and a flattened copy of every gradient: the worker's peak
    memory falls 0.3-0.5 GiB without it (bench/results/smollm2_one_rank_allreduce.json). The sum
    over one rank is the gradient itself, so the engine's own switch (`enable_backward_allreduce`,
    which DeepSpeed turns off for engines that reduce elsewhere) is turned off for it once Trainer
    has built the engine, at train begin. ZeRO stages 1-3 keep it: their reduce step also fills
    the optimizer's partitions."""
    class OneRankNoAllReduce(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            engine = trainer.model_wrapped
            if isinstance(engine, DeepSpeedEngine) and engine.dp_world_size == 1 \
                    and engine.zero_optimization_stage() == 0:
                engine.enable_backward_allreduce = False

    trainer.add_callback(OneRankNoAllReduce())


def muon_compiles_on_first_use() -> None:
    """DeepSpeed 0.19's ZeRO code imports its Muon optimizer wherever it might meet one (the
    engine's optimizer check, ZeRO-1/2's gradient averaging at every step, ZeRO-3 and bf16 set-up),
    and Muon's module wraps its three update functions in `torch.compile` as it is imported
    (`deepspeed.runtime.compiler.compile()`, used by nothing else), which imports torch's inductor
    compiler: 0.8-2.3 s of CPU in every worker of every ZeRO stage, for an optimizer no stage uses
    (the import timed alone and after transformers and TRL; both adapters together:
    bench/results/trainer_start.json). This wraps them on their first call instead, which is
    when `torch.compile` compiles anyway; a Muon run compiles the same functions at the same point.
    Must run before the Muon module is first imported; a no-op after."""
    if getattr(compiler.compile, "on_first_use", False):
        return

    def compile_on_first_call():  # DeepSpeed's `compiler.compile()`: a decorator factory
        def decorate(func):
            compiled = None

            @functools.wraps(func)
            def compiled_on_first_call(*args, **kwargs):
                nonlocal compiled
                if compiled is None:
                    compiled = torch.compile(func)
                return compiled(*args, **kwargs)

            return compiled_on_first_call

        return decorate

    compile_on_first_call.on_first_use = True
    compiler.compile = compile_on_first_call


# --------------------------------------------------------------------------- TRL


def pretokenized_dpo_trainer():
    """TRL's DPOTrainer minus its own tokenization: our rows arrive tokenized on Ray Data
    (prompt_ids, chosen_ids, rejected_ids), and rows that carry shared reference log-probs
    (a sweep's cache) keep them. TRL 1.16 has no public switch for either: its dataset
    preparation runs in __init__ (`_prepare_dataset`) and the precompute pass in `train`
    (`_precompute_ref_logps`)."""
    class PretokenizedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if "prompt_ids" in dataset.column_names:
                return dataset
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

        def _precompute_ref_logps(self, dataset, name, batch_size):
            if "ref_chosen_logps" in dataset.column_names:
                return dataset
            return super()._precompute_ref_logps(dataset, name, batch_size)

    return PretokenizedDPOTrainer


def grpo_logs_groups_without_spread(trainer, measure) -> None:
    """Replace the `frac_reward_zero_std` that TRL's GRPOTrainer logs for each generation batch by
    `measure(rewards_per_func, reward_weights, num_generations)` (grpo.groups_without_spread).
    TRL tests each group's float32 standard deviation against zero with `isclose(atol=1e-8)`, and
    a group of equal weighted rewards such as 0.2 has a standard deviation of 1.6e-8, so it counted
    as spread: the stage's curve and its no-signal warning read 0% whatever the groups held. The
    advantages are not touched (such a group's are ~1e-4, which TRL's +1e-4 in the denominator
    keeps small). `_calculate_rewards` returns every rank's rewards gathered; the metric is
    appended in `_generate_and_score_completions`, after it."""
    calculate, generate = trainer._calculate_rewards, trainer._generate_and_score_completions
    seen: dict = {}

    @functools.wraps(calculate)
    def calculate_rewards(*args, **kwargs):
        seen["rewards"] = out = calculate(*args, **kwargs)
        return out

    @functools.wraps(generate)
    def generate_and_score(*args, **kwargs):
        seen.pop("rewards", None)
        out = generate(*args, **kwargs)
        logged = trainer._metrics["train" if trainer.model.training else "eval"].get("frac_reward_zero_std")
        if "rewards" in seen and logged:
            num_generations = trainer.num_generations if trainer.model.training else trainer.num_generations_eval
            logged[-1] = measure(seen["rewards"].float().cpu().tolist(), trainer.reward_weights.float().cpu().tolist(),
                                 num_generations)
        return out

    trainer._calculate_rewards, trainer._generate_and_score_completions = calculate_rewards, generate_and_score


# --------------------------------------------------------------------------- TRL x peft


def fused_head_sees_trainable_tokens(model) -> None:
    """TRL 1.16 scores every SFT, DPO and GRPO batch through its fused LM head
    (`trl.trainer.utils.add_fused_lm_head`), which reads `lm_head.weight` and `lm_head.bias`.
    When a LoRA stage adds tokens (<think>) to a model with a tied head, peft 0.21 wraps the head
    in a `TrainableTokensWrapper` that forwards `weight` (the merged rows, the new rows' deltas
    included, so gradients reach them) but not `bias`, and the first step fails with an
    AttributeError. A tied head is the embedding's transpose and has no bias of its own: the
    wrapper gets its wrapped module's bias (None) as a plain attribute, not a parameter."""
    head = model.get_output_embeddings()
    if isinstance(head, TrainableTokensWrapper) and "bias" not in vars(head):
        head.__dict__["bias"] = head.original_module.bias


# --------------------------------------------------------------------------- Ray Train


def train_controller_hooks():
    """Ray Train's controller and worker-group callback base classes: the only way to learn
    a run's controller actor and its workers' placement group (ray.train.v2, no public API)."""
    return ControllerCallback, WorkerGroupCallback


def train_worker_hooks():
    """Ray Train's worker callback base class (a DeveloperAPI under ray.train.v2._internal): its
    `after_init_train_context` runs in each worker actor's own method call, on the process's
    main thread, before the training function starts in its thread. Python runs signal
    handlers on the main thread only, so this is where a SIGTERM handler can be installed."""
    return WorkerCallback


def placement_group_of(worker_group):
    return worker_group.get_worker_group_state().placement_group_handle.placement_group


def torch_trainer() -> type[TorchTrainer]:
    """Ray Train's TorchTrainer, without its placement-group cleaner where the cluster does not
    serve Ray's state API.

    Every run, Ray 2.60 starts a detached `PlacementGroupCleaner` actor that polls the run's
    controller through the state API each second, to remove the workers' placement group if the
    controller dies without doing so itself; the controller blocks until that actor has started
    and registered the group. The state API is served by the dashboard, which a local Ray started
    by `runtime.init_ray` (and the tests' Ray) leaves off. There the cleaner can never see the
    controller (it logs "Failed to query Ray Train Controller actor state" every second and
    cleans nothing), and a local Ray's placement groups end with the driver that started it. The
    one case where a controller dies while its Ray lives, a sweep trial that Tune's scheduler
    stops, has its own guard that watches the controller's actor handle instead
    (tune/placement.py). The cleaner costs every stage's launch ~1.7 s on 2 cores: no-op fits
    9.6 s with it, 7.9 s without, alternated on one Ray (bench/results/ray_train_launch.json).
    Clusters with a dashboard keep it.
    The probe asks the connected cluster by its address: with none, Ray's state client refuses to
    choose between two local Rays (a job's own beside a test session's)."""
    return TorchTrainer if _state_api_served(ray.get_runtime_context().gcs_address) else _TorchTrainerNoCleaner


@functools.cache
def _state_api_served(cluster: str) -> bool:
    try:  # a refused connection answers in milliseconds
        list_nodes(address=cluster, limit=1, timeout=10, raise_on_missing_output=False)
    except RayStateApiException:  # ServerUnavailable: no dashboard, so no state API
        return False
    return True


class _TorchTrainerNoCleaner(TorchTrainer):
    def _create_default_callbacks(self):
        return [c for c in super()._create_default_callbacks() if not isinstance(c, PlacementGroupCleanerCallback)]


# --------------------------------------------------------------------------- wandb

WANDB_LAUNCH_INPUTS = "wandb.sdk.launch.inputs.internal"


def wandb_init_skips_unstaged_launch_inputs() -> None:
    """wandb 0.31 ends every `wandb.init` by applying the inputs a wandb Launch job staged
    (`Run._detect_and_apply_job_inputs`), and imports wandb Launch to look for them: 1.3-1.8 s of
    CPU in a training worker, where torch and transformers have loaded thousands of modules that
    pydantic's docstring lookup walks for each of Launch's models (bench/results/trainer_start.json).
    Staged inputs live in a singleton of that module (`StagedLaunchInputs`), filled only by
    `wandb.launch.manage_config_file` / `manage_wandb_config`, which import it. While the module is
    not imported there is nothing to apply; once it is, wandb's own method runs."""
    from wandb.sdk.wandb_run import Run  # only where a stage reports to wandb

    wandbs_apply = Run._detect_and_apply_job_inputs
    if getattr(wandbs_apply, "skips_unstaged", False):
        return

    def _detect_and_apply_job_inputs(self) -> None:
        if WANDB_LAUNCH_INPUTS in sys.modules:
            wandbs_apply(self)

    _detect_and_apply_job_inputs.skips_unstaged = True
    Run._detect_and_apply_job_inputs = _detect_and_apply_job_inputs
