"""The report's provenance footer: the code, libraries, machines, cluster and seed behind its
numbers, and per stage what trained it and whether it was reused stale.

`footer(result)` returns markdown lines that report.py appends, read from the run record's
provenance.json (run_provenance.py) and each stage's manifest; the full record, the diff
and the pip freezes sit beside the report.
"""

from __future__ import annotations

from tinyreason.curriculum import CurriculumResult
from tinyreason.machine import cpu_id_text, last_level_cache
from tinyreason.outputs import digest
from tinyreason.render import md_table
from tinyreason.run_provenance import GIT_DIFF, PROVENANCE, REQUIREMENTS, read_record

SHOWN_FILES = 5  # changed or untracked files named in the footer; git.diff has them all


def footer(result: CurriculumResult) -> list[str]:
    """The markdown section, or a line saying why there is no record to show."""
    record = read_record(result.run)
    md = ["## Provenance", ""]
    if record is None:
        return md + [f"No {PROVENANCE} in this run record: it was written by a tinyreason without provenance.", ""]
    ended = f", ended {record['ended_at']}" if record.get("ended_at") else ", not finished"
    md += [f"Run `{record['run_id']}` of `{record['experiment']}`, started {record['started_at']}{ended}; "
           f"everything below and more is in `{PROVENANCE}` beside this report.", ""]
    md += [md_table(("what", "value"), run_rows(record)), ""]
    md += [md_table(("stage", "status", "seed", "trained by", "trained on"), stage_rows(result)), ""]
    for o in result.stages:
        if o.stale:
            md.append(f"- **{o.stage.name}** is stale: reused from `{o.output.rel}` (reuse_stale) although, "
                      f"since it trained: {', '.join(o.stale)}.")
    return md + [""]


def run_rows(record: dict) -> list[tuple[str, str]]:
    driver, worker = record.get("driver") or {}, record.get("worker") or {}
    rows = [("code", code_line(record)), ("git from", git_source(record)),
            ("command", " ".join(record.get("command") or []) or "-"),
            ("seed", f"{record.get('seed')} (every stage's trainer.seed unless the stage sets its own)"
             + ("; reuse_stale on" if record.get("reuse_stale") else "")),
            ("python", (driver.get("python") or {}).get("version", "-")),
            ("torch", torch_line(driver)),
            ("numerics libraries", ", ".join(f"{k} {v}" for k, v in sorted((record.get("numerics") or {}).items()))),
            ("driver machine", machine_line(driver)),
            ("worker machine", machine_line(worker) if worker.get("packages") else
             f"unknown: {worker.get('why', 'not collected')}"),
            ("ray cluster", cluster_line(record.get("ray") or {})),
            ("pip freeze", freeze_line(driver, worker))]
    return rows


def code_line(record: dict) -> str:
    git, version = record.get("git") or {}, (record.get("platform") or {}).get("version")
    head = f"tinyreason {version}"
    if not git.get("available"):
        return f"{head}; git commit unknown: {git.get('why')}"
    line = f"{head}, commit {str(git.get('commit'))[:12]}" + (f" ({git['branch']})" if git.get("branch") else "")
    if not git.get("dirty"):
        return line + ", clean"
    changed = [l[len("+++ b/"):] for l in (git.get("diff") or "").splitlines() if l.startswith("+++ b/")]
    untracked = git.get("untracked") or []
    named = ", ".join((changed + untracked)[:SHOWN_FILES]) + (" ..." if len(changed + untracked) > SHOWN_FILES else "")
    return (f"{line}, DIRTY: {len(changed)} file(s) changed, {len(untracked)} untracked ({named}); "
            f"the diff is in {GIT_DIFF}" + (f" (digest {digest(git['diff'])})" if git.get("diff") else ""))


def git_source(record: dict) -> str:
    git, submit = record.get("git") or {}, record.get("submit") or {}
    if git.get("source") == "git":
        return "the checkout the driver ran in"
    if git.get("source") == "client record":
        changed = git.get("changed_since_record") or []
        return (f"the submitting machine {git.get('recorded_on')} at {git.get('recorded_at')} (jobs/submit.py)"
                + (f"; uploaded code differs from the record: {', '.join(changed[:SHOWN_FILES])}" if changed else "")
                + (f"; command: {submit['command']}" if submit.get("command") else ""))
    return f"unknown: {git.get('why')}"


def torch_line(env: dict) -> str:
    torch, nvidia = env.get("torch") or {}, env.get("nvidia") or {}
    if not torch.get("available"):
        return torch.get("why", "-")
    build = f"CUDA {torch['cuda_build']}" if torch.get("cuda_build") else "CPU build"
    driver = f", NVIDIA driver {nvidia['driver']}" if nvidia.get("driver") else ""
    return f"{torch.get('version')} ({build}{', cuDNN ' + str(torch['cudnn_build']) if torch.get('cudnn_build') else ''}){driver}"


def machine_line(env: dict) -> str:
    if not env:
        return "-"
    cpu, mem, nvidia = env.get("cpu") or {}, env.get("memory") or {}, env.get("nvidia") or {}
    gpus = [g["name"] for g in nvidia.get("gpus", [])] or (env.get("torch") or {}).get("gpus") or []
    gib = (mem.get("cgroup_limit_bytes") or mem.get("total_bytes") or 0) / 2**30
    shown_gpus = f"{len(gpus)} x {gpus[0]}" if gpus and len(set(gpus)) == 1 else ", ".join(gpus) or "no GPU"
    kernels = (env.get("torch") or {}).get("cpu_capability")
    detail = ", ".join(x for x in (cpu_id_text(cpu.get("id")), kernels and f"{kernels} kernels",
                                   last_level_cache(cpu)) if x)
    return (f"{env.get('hostname')}: {cpu.get('model') or 'CPU'}" + (f" ({detail})" if detail else "")
            + f", {cpu.get('usable')} of {cpu.get('count')} cores, {gib:.0f} GiB, {shown_gpus}")


def cluster_line(ray: dict) -> str:
    if not ray.get("available"):
        return f"unknown: {ray.get('why', 'not recorded')}"
    total = ray.get("total") or {}
    accel = sorted({a for n in ray.get("nodes", []) for a in n.get("accelerators", [])})
    return (f"{ray['nodes_alive']} node(s) alive, {total.get('cpus', 0):g} CPUs, {total.get('gpus', 0):g} GPUs"
            + (f" ({', '.join(accel)})" if accel else ""))


def freeze_line(driver: dict, worker: dict) -> str:
    mine, theirs = driver.get("packages") or [], worker.get("packages") or []
    line = f"{REQUIREMENTS.format(who='driver')} ({len(mine)} packages)"
    if theirs:
        differ = sorted(set(mine) ^ set(theirs))
        line += (f", {REQUIREMENTS.format(who='worker')}: " +
                 ("the same" if not differ else f"{len(differ)} differ ({', '.join(differ[:SHOWN_FILES])})"))
    return line


def stage_rows(result: CurriculumResult) -> list[tuple]:
    rows = []
    for o in result.stages:
        prov = o.manifest.get("provenance") or {}
        trained_by, seed, worker = prov.get("trained_by") or {}, prov.get("seed") or {}, prov.get("worker") or {}
        versions = trained_by.get("versions") or {}
        status = "stale (reused)" if o.stale else "cached" if o.cached else "trained"
        by = (f"code {digest(trained_by['code'])} ({len(trained_by['code'])} files), "
              + ", ".join(f"{k} {versions[k]}" for k in ("torch", "transformers", "trl") if k in versions)
              if trained_by else "not recorded (trained before provenance)")
        on = (f"{worker.get('hostname')}, torch {worker.get('torch')}" + (f", {', '.join(worker['gpus'])}"
              if worker.get("gpus") else ", CPU") if worker else "-")
        rows.append((o.stage.name, status, f"{seed['seed']} ({seed['from']})" if seed else "-", by, on))
    return rows
