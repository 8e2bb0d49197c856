"""The micro curriculum's job as a user sees it: `python jobs/curriculum.py --config
configs/micro.yaml` (tests/conftest.py: `micro_job`) tells the story of its five stages on a
quiet console, and its run's log files keep everything else. The job starts its own local Ray in
its own process, so this module runs beside the Ray tier (OWN_RAY), and the job trains the
stages that test_micro_curriculum.py, the sweeps and the reproducibility tests then read."""

import re


def test_the_console_tells_the_story_and_the_logs_keep_everything(micro_job):
    console = (micro_job.stdout + micro_job.stderr).splitlines()
    assert 20 <= len(console) <= 80, "\n".join(console)
    bad = [line for line in console if re.search(r"error|traceback|exception|failed", line, re.IGNORECASE)]
    assert not bad, bad
    # warnings on the console are the platform's own advice (here: the micro grpo stage earns no reward)
    warnings = [line for line in console if "warning" in line.lower()]
    assert all(re.match(r"\[\d\d:\d\d:\d\d\] warning: stage \d/5 ", line) for line in warnings), warnings
    for i, (stage, kind) in enumerate([("pretrain", "pretrain"), ("sft", "sft"), ("reasoning", "reasoning_sft"),
                                       ("dpo", "dpo"), ("grpo", "grpo")]):
        label = f"stage {i + 1}/5 {stage} ({kind})"
        assert any(line.endswith(f"{label}: trained because this experiment had not run it before") or
                   f"{label}: reused" in line for line in console), label
        assert any(f"{label}: evaluated: heldout/accuracy" in line for line in console), label
    log = (micro_job.run / "logs" / "driver.log").read_text()
    assert "tinyreason.stage: stage 1/5 pretrain (pretrain)" in log  # the platform's own lines, with their logger
    assert "RayTrainWorker pid=" in log or "(RayTrainWorker" in log  # the workers' output, streamed by Ray
    # ... and only what they wrote: dill disassembles functions into a captured stdout while
    # datasets fingerprints a shard, and Ray Train's print patch used to log it anyway
    assert "LOAD_GLOBAL" not in log and "RETURN_VALUE" not in log, "captured output reached the log"
    assert len(log.splitlines()) > 5 * len(console)
