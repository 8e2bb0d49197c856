"""What training cost: worker-hours (GPU-hours on GPUs), tokens trained and, with a price
table (`cost.prices`), money; per stage (the `cost` key of its manifest), per run and per
sweep trial (the reports).

The arithmetic, from what a stage leaves behind:

- an attempt is one start of the stage's worker group (the first, and one per fault or
  resize); rank 0 records it in workers.jsonl with the number of workers and each worker's
  node type. It lasts from its start to the next attempt's start (the last one to the end
  of training), or to its last log line when nothing ran for a long while in between (a
  driver that died and a stage resumed the next day). Time lost to faults is counted: it was
  paid for.
- worker-hours = sum over attempts of hours x workers; GPU-hours = worker-hours x
  `scaling.gpus_per_worker` (0 on CPU).
- money = sum over workers of hours x the price of the worker's share of its node: the node
  type's price per hour x (the worker's GPUs / the node's GPUs), or its CPUs / the node's CPUs
  for CPU workers, with the node's counts from the cluster file's `resources`.
- tokens = the trainer's count of real (non-padding) tokens trained, summed over workers.

Pure Python over records and a YAML file: no Ray, so unit tests check it with numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

# The node label Ray gives a node the autoscaler launched (from RAY_NODE_TYPE_NAME): its
# node type in the cluster file, e.g. gpu_a10g. Absent on clusters started by hand.
NODE_TYPE_LABEL = "ray.io/node-group"


def cluster_node_types(path: str | Path) -> dict[str, dict[str, float]]:
    """{node type: {"GPU": n, "CPU": n}}: each available_node_types entry of a Ray cluster
    launcher file with the GPU and CPU counts its `resources` declare (either may be absent)."""
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    types = raw.get("available_node_types") or {}
    return {name: {k: float(v) for k, v in ((spec or {}).get("resources") or {}).items() if k in ("CPU", "GPU")}
            for name, spec in types.items()}


def check_prices(prices: dict[str, float], node_types: dict[str, dict[str, float]], cluster: str) -> None:
    """Every priced node type exists in the cluster file and says how many GPUs or CPUs it has
    (a worker pays its share of the node); a ValueError naming the first that does not."""
    for name in prices:
        if name not in node_types:
            raise ValueError(f"cost.prices names node type {name!r}, which {cluster} does not have; its node types "
                             f"are: {', '.join(node_types) or '(none)'}. Use one of those names, or set cost.cluster "
                             "to the cluster file the run uses")
        if not node_types[name].get("GPU") and not node_types[name].get("CPU"):
            raise ValueError(f"cost.prices prices node type {name!r}, but {cluster} declares neither GPUs nor CPUs "
                             f"for it; add resources: {{CPU: <its vCPUs>}} to {name} so a worker's share of the node "
                             "can be priced")


@dataclass(frozen=True)
class Attempt:
    """One start of a stage's worker group: when, for how long, on which node types."""

    start: float
    seconds: float
    node_types: tuple[str | None, ...]  # one per worker

    @property
    def workers(self) -> int:
        return len(self.node_types)


# A gap this long between an attempt's last log line and the next attempt's start means nothing
# ran in between (the driver died and the stage was resumed later), so the attempt ends at its last line.
IDLE_GAP_S = 600


def attempts(workers: list[dict], end: float, metrics: list[dict] | None = None) -> list[Attempt]:
    """The attempts of a stage from its workers.jsonl records, its time-stamped metrics.jsonl
    lines and the time training ended.

    Rank 0's record opens an attempt and carries its worker count and node types (an older
    record lacks them: the attempt's other records are counted). An attempt ends where the
    next begins, unless its last line came more than IDLE_GAP_S before that; the last ends
    at `end`."""
    firsts = sorted((w for w in workers if w.get("rank") == 0), key=lambda w: w["time"])
    stamps = sorted(m["time"] for m in metrics or [] if isinstance(m.get("time"), (int, float)))
    out = []
    for i, w in enumerate(firsts):
        start = w["time"]
        later = firsts[i + 1]["time"] if i + 1 < len(firsts) else None
        if later is None:
            stop = end
        elif not stamps:  # logs without times (older runs): nothing tells a pause from a restart
            stop = later
        else:
            last = max([start, *(t for t in stamps if start <= t < later)])
            stop = later if later - last <= IDLE_GAP_S else last
        types = w.get("node_types")
        if types is None:
            n = w.get("world_size") or sum(1 for x in workers if start - 60 <= x["time"] < (later or float("inf")))
            types = [w.get("node_type")] * max(1, n)
        out.append(Attempt(start, max(0.0, stop - start), tuple(types)))
    return out


def worker_rates(prices: dict[str, float], node_types: dict[str, dict[str, float]], gpus_per_worker: float,
                 cpus_per_worker: float, use_gpu: bool) -> dict[str, float]:
    """Price per worker-hour on each priced node type: the node's price times the worker's share."""
    rates = {}
    for name, price in prices.items():
        node = node_types.get(name, {})
        if use_gpu and node.get("GPU"):
            rates[name] = price * gpus_per_worker / node["GPU"]
        elif not use_gpu and node.get("CPU"):
            rates[name] = price * cpus_per_worker / node["CPU"]
    return rates


def tokens_trained(metrics: list[dict]) -> int | None:
    """Real tokens trained, summed over workers: the trainer's last count (a resumed attempt
    restores the count of the checkpoint it resumed from, so redone steps are not counted twice)."""
    for key in ("num_input_tokens_seen", "num_tokens"):
        seen = [m[key] for m in metrics if isinstance(m.get(key), (int, float))]
        if seen:
            return int(max(seen))
    return None


def stage_cost(workers: list[dict], end: float, metrics: list[dict], *, gpus_per_worker: float, use_gpu: bool,
               rates: dict[str, float] | None = None, default_node_type: str | None = None,
               currency: str = "USD") -> dict:
    """The `cost` of a stage's manifest: worker-hours, GPU-hours, tokens, attempts, and money
    when `rates` (worker_rates) price the node types its workers ran on."""
    runs = attempts(workers, end, metrics)
    worker_hours = sum(a.seconds * a.workers for a in runs) / 3600
    out: dict = {"attempts": len(runs), "worker_hours": round(worker_hours, 6),
                 "gpu_hours": round(worker_hours * gpus_per_worker, 6) if use_gpu else 0.0,
                 "tokens": tokens_trained(metrics)}
    if rates:
        money, unpriced = 0.0, 0.0
        for a in runs:
            for node_type in a.node_types:
                rate = rates.get(node_type or default_node_type or "")
                if rate is None:
                    unpriced += a.seconds / 3600
                else:
                    money += a.seconds / 3600 * rate
        out.update(money=round(money, 6), currency=currency)
        if unpriced:
            out["unpriced_worker_hours"] = round(unpriced, 6)  # on node types the price table lacks
    return out


# --------------------------------------------------------------------------- reports


def total(costs: list[dict | None]) -> dict:
    """The sum of several stages' (or trials') costs; money only when every one of them has it."""
    costs = [c for c in costs if c]
    out: dict = {"worker_hours": round(sum(c.get("worker_hours", 0) for c in costs), 6),
                 "gpu_hours": round(sum(c.get("gpu_hours", 0) for c in costs), 6),
                 "tokens": sum(c.get("tokens") or 0 for c in costs)}
    if costs and all("money" in c for c in costs):
        out.update(money=round(sum(c["money"] for c in costs), 6), currency=costs[0].get("currency", "USD"))
    return out


def _hours(h: float | None) -> str:
    return "-" if h is None else f"{h:.3g}" if h >= 0.01 else f"{h * 3600:.0f} s"


def _money(c: dict) -> str:
    return f"{c['money']:.2f} {c.get('currency', 'USD')}" if "money" in c else "-"


def cost_results(rows: list[tuple[str, dict | None, bool]]) -> dict:
    """results.json fields: each row's cost and the totals. A row is (name, its cost, whether
    it was trained now); the run total counts what was trained now, `to_reproduce` everything."""
    return {"rows": {name: c for name, c, _ in rows},
            "run": total([c for _, c, now in rows if now]),
            "to_reproduce": total([c for _, c, _ in rows])}


def cost_section(rows: list[tuple[str, dict | None, bool]], title: str = "Cost") -> list[str]:
    """A report's markdown section: worker-hours, GPU-hours, tokens and money per row, with the
    run's total (rows trained now) and what reproducing every row would cost. Rows are
    (name, its cost, whether it was trained now); [] when no row has a cost."""
    if not any(c for _, c, _ in rows):
        return []
    lines = [f"## {title}", "", "| | status | attempts | worker-hours | GPU-hours | tokens | cost |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, c, now in rows:
        if not c:
            lines.append(f"| {name} | {'trained' if now else 'reused'} | - | - | - | - | - |")
            continue
        lines.append(f"| {name} | {'trained' if now else 'reused'} | {c.get('attempts', '-')} | "
                     f"{_hours(c.get('worker_hours'))} | {_hours(c.get('gpu_hours')) if c.get('gpu_hours') else '-'} | "
                     f"{c.get('tokens') or 0:,} | {_money(c)} |")
    res = cost_results(rows)
    for label, t in (("this run", res["run"]), ("to reproduce", res["to_reproduce"])):
        lines.append(f"| **{label}** | | | {_hours(t['worker_hours'])} | "
                     f"{_hours(t['gpu_hours']) if t['gpu_hours'] else '-'} | {t['tokens']:,} | {_money(t)} |")
    lines += ["", "Worker-hours run from each start of a stage's workers (faults and resizes included) to the end of "
              "its training; a reused stage cost nothing this run, and its figures are what it cost when it trained. "
              "Money needs a price per node type (`cost.prices`); a worker pays its share of its node.", ""]
    return lines


def curriculum_cost(stages) -> tuple[dict, list[str]]:
    """For a curriculum report, from its StageOutcomes (anything with `.stage.name`, `.manifest`
    and `.cached`): its results.json `cost` (per stage, this run, to reproduce) and its
    markdown section."""
    rows = [(o.stage.name, (o.manifest or {}).get("cost"), not o.cached) for o in stages]
    return cost_results(rows), cost_section(rows)


COST_PREFIX = "cost/"  # a sweep trial reports its stage's cost as flat Tune metrics: cost/worker_hours, ...


def as_metrics(c: dict | None) -> dict:
    """A stage's cost as flat metrics a Tune trial can report."""
    return {f"{COST_PREFIX}{k}": v for k, v in (c or {}).items()}


def trial_cost_section(trials) -> list[str]:
    """For a sweep report, from its TrialRecords (anything with `.trial_id` and `.metrics`): the
    cost of every trial's stage, stopped ones included, and the sweep's total."""
    rows = [(t.trial_id, {k.removeprefix(COST_PREFIX): v for k, v in t.metrics.items() if k.startswith(COST_PREFIX)}
             or None, True) for t in trials]
    section = cost_section(rows, title="Cost per trial")
    return [line.replace("| **this run** |", "| **the sweep** |") for line in section
            if not line.startswith("| **to reproduce**")]
