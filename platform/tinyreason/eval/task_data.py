"""The items of an experiment's lm-eval tasks, read where their data is on this machine, so
the training blends can be decontaminated against them (eval/sets.py).

A configured task, group or tag is resolved to its leaf tasks through lm-eval's own task
index (`TaskManager(include_path=...)`: `include:` files merged, groups and tags expanded,
`!function` left unresolved), so a task reads here as the harness reads it. Each leaf's
scored split (`test_split`, else `validation_split`) is read from

- local files: `dataset_path: json | csv | parquet` with `dataset_kwargs.data_files`
  (relative paths against the working dir, as `datasets` resolves them), or
- the local Hugging Face datasets cache: a hub `dataset_path` that was downloaded once
  (lm-eval's own tasks on a machine that ran them before), never the network.

An item's texts are the row fields its prompt shows: the variables of the task's
`doc_to_decontamination_query` (lm-eval's own decontamination text) or `doc_to_text`, and of
`doc_to_target` (worked solutions leak too); a row where none is a string gives all its
string fields. A task whose data is neither local nor cached is returned as unreadable,
with the reason, and the blend card names it.
"""

from __future__ import annotations

import csv
import glob
import importlib.util
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import jinja2.meta

LOCAL_BUILDERS = ("json", "csv", "parquet")
_ENV = jinja2.Environment()


@dataclass
class TaskItems:
    """One configured task (or group, or tag): the texts of its items that could be read."""

    name: str
    texts: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # files or hub datasets read
    unreadable: list[str] = field(default_factory=list)  # why its tasks (or some) could not be read


class Unreadable(Exception):
    """A leaf task whose data is not on this machine; the message says why."""


def task_items(names: list[str], include_dirs: list[str]) -> list[TaskItems]:
    """The items of each configured task name, resolved through lm-eval's task index."""
    index = task_index(names, include_dirs)
    out = []
    for name in names:
        found, why = TaskItems(name), []
        leaves = leaf_configs(name, index)
        if not leaves:
            why.append("no such lm-eval task in lm-eval's own tasks or the include_path dirs")
        for leaf in leaves:
            try:
                texts, source = read_items(leaf)
            except Unreadable as e:
                why.append(str(e))
                continue
            found.texts += texts
            found.sources.append(source)
        if why:  # a group of 57 uncached subtasks is one line, not 57
            found.unreadable.append(why[0] + (f"; and {len(why) - 1} more of its {len(leaves)} tasks"
                                               if len(why) > 1 else ""))
        out.append(found)
    return out


def task_index(names: list[str], include_dirs: list[str]) -> dict:
    """lm-eval's {name: Entry} index over the include dirs and, for names they do not define,
    only the task families (top-level dirs of lm-eval's tasks) that define them: indexing all
    ~14,000 of lm-eval's task YAMLs takes 30 s on 2 loaded cores, a text scan for the names 2.5 s."""
    # on use: lm-eval costs ~3.5 s to import, paid only by experiments that configure such tasks
    from lm_eval.tasks import TaskManager

    local = TaskManager(include_path=include_dirs, include_defaults=False).task_index if include_dirs else {}
    missing = [n for n in names if n not in local]
    if not missing:
        return local
    families = lm_eval_families(missing)
    if not families:  # defined nowhere in lm-eval: the card names it, the harness will too
        return local
    narrowed = TaskManager(include_path=[*families, *include_dirs], include_defaults=False).task_index
    if all(n in narrowed and not unresolved(n, narrowed) for n in names):
        return narrowed
    return TaskManager(include_path=include_dirs or None).task_index  # a group that spans families


def lm_eval_families(names: list[str]) -> list[str]:
    """The dirs under lm-eval's tasks/ whose YAMLs define these names as a task or group, or
    carry them as a tag (`tag: name`, or `- name` in a list)."""
    root = Path(importlib.util.find_spec("lm_eval").submodule_search_locations[0]) / "tasks"
    alt = "|".join(re.escape(n) for n in names)
    define = re.compile(rf"^\s*(?:task|group|tag):\s*['\"]?(?:{alt})['\"]?\s*$", re.MULTILINE)
    listed = re.compile(rf"^\s*-\s*['\"]?(?:{alt})['\"]?\s*$", re.MULTILINE)
    found: dict[str, set] = {"define": set(), "listed": set()}
    for path in root.rglob("*.yaml"):
        text = path.read_text(encoding="utf-8", errors="replace")
        for how, pattern in (("define", define), ("listed", listed)):
            if pattern.search(text):
                found[how].add(str(root / path.relative_to(root).parts[0]))
    return sorted(found["define"] or found["listed"])


def unresolved(name: str, index: dict, seen: set | None = None) -> list[str]:
    """Children of a group that the index does not hold (a group spanning task families)."""
    seen = set() if seen is None else seen
    if name in seen:
        return []
    seen.add(name)
    entry = index.get(name)
    if entry is None:
        return [name]
    if getattr(entry.kind, "name", "") != "GROUP":
        return []
    children = [c if isinstance(c, str) else c.get("task") for c in (entry.cfg or {}).get("task", [])]
    return [m for c in children if isinstance(c, str) for m in unresolved(c, index, seen)]


def leaf_configs(name: str, index: dict, seen: set | None = None) -> list[dict]:
    """The configs of the tasks under a task, group or tag (each once)."""
    seen = set() if seen is None else seen
    if name in seen or name not in index:
        return []
    seen.add(name)
    entry = index[name]
    kind = getattr(entry.kind, "name", str(entry.kind))
    cfg = entry.cfg or {}
    if kind in ("TASK", "PY_TASK"):
        return [cfg] if cfg else []
    if kind == "GROUP":
        children = [c if isinstance(c, str) else c.get("task") for c in cfg.get("task", [])]
    else:  # a tag: the index keeps its member tasks in `tags`
        children = sorted(entry.tags)
    return [leaf for child in children if isinstance(child, str) for leaf in leaf_configs(child, index, seen)]


def read_items(cfg: dict) -> tuple[list[str], str]:
    """(item texts, where they came from) of one leaf task's scored split."""
    split = cfg.get("test_split") or cfg.get("validation_split")
    path = cfg.get("dataset_path")
    if not split or not path:
        raise Unreadable(f"task {cfg.get('task')!r} names no dataset_path or scored split")
    if path in LOCAL_BUILDERS:
        rows, source = _local_rows(cfg, split)
    else:
        rows, source = _cached_rows(cfg, split)
    fields = template_fields(cfg.get("doc_to_decontamination_query") or cfg.get("doc_to_text"))
    fields += template_fields(cfg.get("doc_to_target"))
    return [t for row in rows for t in row_texts(row, fields)], source


def template_fields(template) -> list[str]:
    """The row fields a lm-eval prompt template reads: the variables of a Jinja template, or
    the column a bare name selects. A `!function` (left as a path) names no field."""
    if not isinstance(template, str):
        return []
    if "{{" not in template and "{%" not in template:
        return [template]
    return sorted(jinja2.meta.find_undeclared_variables(_ENV.parse(template)))


def row_texts(row: dict, fields: list[str]) -> list[str]:
    texts = [row[f] for f in fields if isinstance(row.get(f), str) and row[f].strip()]
    return texts or [v for v in row.values() if isinstance(v, str) and v.strip()]


def _local_rows(cfg: dict, split: str) -> tuple[list[dict], str]:
    files = (cfg.get("dataset_kwargs") or {}).get("data_files")
    if isinstance(files, dict):
        files = files.get(split)
    if not files:
        raise Unreadable(f"task {cfg['task']!r}: dataset_path {cfg['dataset_path']} without data_files for split "
                         f"{split!r}")
    paths = sorted({p for f in ([files] if isinstance(files, str) else files) for p in glob.glob(os.path.expanduser(f))})
    if not paths:
        raise Unreadable(f"task {cfg['task']!r}: data file {files} not found (relative to {os.getcwd()})")
    rows = [r for p in paths for r in read_file(Path(p), cfg["dataset_path"])]
    return rows, ", ".join(paths)


def read_file(path: Path, kind: str) -> list[dict]:
    """Rows of a local eval data file as `datasets`' json / csv / parquet builders read it."""
    if kind == "parquet":
        # on use: pyarrow is loaded by Ray Data anyway; parquet task files are rare
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if kind == "csv":
        return list(csv.DictReader(text.splitlines()))
    if text.lstrip().startswith("["):
        return [r for r in json.loads(text) if isinstance(r, dict)]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _cached_rows(cfg: dict, split: str) -> tuple[list[dict], str]:
    """A hub dataset's split from the local datasets cache only, through the builder that
    `load_dataset` itself falls back to offline. Never the network: without one, `load_dataset`
    spends ~30 s in retries per dataset before it looks in the cache."""
    # on use: datasets costs ~1 s to import; only experiments with hub-backed tasks get here
    import datasets
    from datasets.packaged_modules.cache.cache import Cache

    path, name = cfg["dataset_path"], cfg.get("dataset_name")
    root = os.path.expanduser(str((cfg.get("dataset_kwargs") or {}).get("cache_dir") or datasets.config.HF_DATASETS_CACHE))
    try:
        builder = Cache(cache_dir=root, dataset_name=path.split("/")[-1], repo_id=path, config_name=name,
                        version="auto", hash="auto")
        builder.download_and_prepare()  # a no-op on a cache: it checks the dir is there
        rows = builder.as_dataset(split=split).to_list()
    except Exception as e:  # not cached, or another config or split: name it, the blend goes on
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise Unreadable(f"dataset {path}{f' ({name})' if name else ''} split {split} is not in the local Hugging "
                         f"Face cache {root} ({first})") from None
    return rows, f"{path}" + (f" ({name})" if name else "") + f" [{split}], local cache"
