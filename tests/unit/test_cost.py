"""The cost arithmetic, with numbers: attempts from workers.jsonl, worker-hours, GPU-hours,
a worker's share of its node's price, totals per run, and the report section."""

from pathlib import Path

import pytest

from tinyreason import cost

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_000_000.0


def _attempt(start: float, node_types: list, world: int | None = None) -> list[dict]:
    """workers.jsonl records of one attempt, rank 0 first with the node types of every rank."""
    n = world or len(node_types)
    return [{"rank": r, "time": start + r * 0.5, "world_size": n,
             **({"node_types": node_types} if r == 0 else {})} for r in range(n)]


def test_the_repository_cluster_declares_each_node_types_gpus():
    types = cost.cluster_node_types(ROOT / "cluster.yaml")
    assert {k: v.get("GPU") for k, v in types.items()} == {"head": 0, "gpu_a10g": 4, "gpu_a100": 8, "gpu_h100": 8}


def test_worker_hours_count_every_attempt_until_the_next_one_starts():
    # 2 workers for 30 min, a fault, then 1 worker for 60 min more
    workers = _attempt(T0, ["gpu_a10g", "gpu_a10g"]) + _attempt(T0 + 1800, ["gpu_a10g"])
    runs = cost.attempts(workers, end=T0 + 1800 + 3600)
    assert [(a.seconds, a.workers) for a in runs] == [(1800, 2), (3600, 1)]
    c = cost.stage_cost(workers, T0 + 5400, [{"num_input_tokens_seen": 7_000}, {"num_input_tokens_seen": 9_000}],
                        gpus_per_worker=1, use_gpu=True)
    assert c == {"attempts": 2, "worker_hours": 2.0, "gpu_hours": 2.0, "tokens": 9_000}


def test_an_attempt_that_fell_silent_ends_at_its_last_log_line():
    # the driver died 10 min into attempt 1; the stage was resumed a day later for 30 min
    workers = _attempt(T0, [None, None]) + _attempt(T0 + 86_400, [None, None])
    metrics = [{"step": 5, "time": T0 + 300}, {"step": 10, "time": T0 + 600}, {"step": 15, "time": T0 + 86_400 + 60}]
    runs = cost.attempts(workers, end=T0 + 86_400 + 1800, metrics=metrics)
    assert [a.seconds for a in runs] == [600, 1800]


def test_a_worker_pays_its_share_of_its_nodes_price():
    types = {"gpu_a10g": {"GPU": 4}, "gpu_h100": {"GPU": 8}, "cpu": {"CPU": 16}}
    prices = {"gpu_a10g": 6.0, "gpu_h100": 80.0, "cpu": 0.8}
    assert cost.worker_rates(prices, types, 1, 1, use_gpu=True) == {"gpu_a10g": 1.5, "gpu_h100": 10.0}
    assert cost.worker_rates(prices, types, 1, 2, use_gpu=False) == {"cpu": 0.1}
    # 2 workers on A10G for half an hour, then 1 on H100 for an hour: 2 x 0.5 x 1.5 + 1 x 1 x 10
    workers = _attempt(T0, ["gpu_a10g", "gpu_a10g"]) + _attempt(T0 + 1800, ["gpu_h100"])
    c = cost.stage_cost(workers, T0 + 5400, [], gpus_per_worker=1, use_gpu=True,
                        rates=cost.worker_rates(prices, types, 1, 1, use_gpu=True))
    assert c["money"] == pytest.approx(11.5) and c["currency"] == "USD" and "unpriced_worker_hours" not in c


def test_workers_on_unlabelled_nodes_are_charged_as_the_configured_node_type_or_counted_unpriced():
    workers = _attempt(T0, [None, "gpu_v100"])
    rates = {"gpu_a10g": 1.5}
    c = cost.stage_cost(workers, T0 + 3600, [], gpus_per_worker=1, use_gpu=True, rates=rates,
                        default_node_type="gpu_a10g")
    assert c["money"] == pytest.approx(1.5) and c["unpriced_worker_hours"] == pytest.approx(1.0)


def test_records_of_older_runs_without_worker_counts_are_counted_by_their_lines():
    workers = [{"rank": 0, "time": T0}, {"rank": 1, "time": T0 + 1}]
    assert cost.attempts(workers, T0 + 3600)[0].workers == 2


def test_a_price_table_must_name_node_types_the_cluster_has():
    types = cost.cluster_node_types(ROOT / "cluster.yaml")
    cost.check_prices({"gpu_a10g": 5.67}, types, "cluster.yaml")
    with pytest.raises(ValueError, match=r"'gpu_v100', which cluster.yaml does not have; its node types are: head, "
                                         r"gpu_a10g, gpu_a100, gpu_h100"):
        cost.check_prices({"gpu_v100": 3.0}, types, "cluster.yaml")
    with pytest.raises(ValueError, match=r"node type 'head', but cluster.yaml declares neither GPUs nor CPUs.*CPU"):
        cost.check_prices({"head": 0.38}, types, "cluster.yaml")


def test_run_totals_count_what_trained_now_and_what_reproducing_would_cost():
    a = {"attempts": 1, "worker_hours": 2.0, "gpu_hours": 2.0, "tokens": 100, "money": 3.0, "currency": "USD"}
    b = {"attempts": 2, "worker_hours": 1.0, "gpu_hours": 1.0, "tokens": 50, "money": 1.5, "currency": "USD"}
    res = cost.cost_results([("sft", a, False), ("dpo", b, True)])
    assert res["run"] == {"worker_hours": 1.0, "gpu_hours": 1.0, "tokens": 50, "money": 1.5, "currency": "USD"}
    assert res["to_reproduce"]["money"] == 4.5 and res["to_reproduce"]["worker_hours"] == 3.0
    # money only when every part has a price
    assert "money" not in cost.total([a, {"worker_hours": 1.0, "gpu_hours": 0.0, "tokens": 1}])


def test_the_report_section_shows_worker_hours_per_row_and_money_with_a_price_table():
    a = {"attempts": 1, "worker_hours": 2.0, "gpu_hours": 2.0, "tokens": 1234, "money": 3.0, "currency": "USD"}
    md = "\n".join(cost.cost_section([("sft", a, True), ("dpo", None, False)]))
    assert "| sft | trained | 1 | 2 | 2 | 1,234 | 3.00 USD |" in md
    assert "| dpo | reused | - | - | - | - | - |" in md
    assert "| **this run** | | | 2 | 2 | 1,234 | 3.00 USD |" in md
    unpriced = "\n".join(cost.cost_section([("pretrain", {"attempts": 1, "worker_hours": 0.005, "gpu_hours": 0.0,
                                                           "tokens": 10}, True)]))
    assert "| pretrain | trained | 1 | 18 s | - | 10 | - |" in unpriced
    assert cost.cost_section([("x", None, True)]) == []


def test_what_the_reports_call_gives_sections_and_results():
    from types import SimpleNamespace as NS

    a = {"attempts": 1, "worker_hours": 0.5, "gpu_hours": 0.5, "tokens": 10, "money": 0.75, "currency": "USD"}
    stages = [NS(stage=NS(name="sft"), manifest={"cost": a}, cached=True),
              NS(stage=NS(name="dpo"), manifest={"cost": a}, cached=False)]
    results, md = cost.curriculum_cost(stages)
    assert results["run"]["money"] == 0.75 and results["to_reproduce"]["money"] == 1.5 and md[0] == "## Cost"
    trials = [NS(trial_id="t1", metrics={"objective": 0.5, **cost.as_metrics(a)}), NS(trial_id="t2", metrics={})]
    md = "\n".join(cost.trial_cost_section(trials))
    assert "## Cost per trial" in md and "| t1 | trained | 1 | 0.5 | 0.5 | 10 | 0.75 USD |" in md
    assert "| t2 | trained | - |" in md and "| **the sweep** |" in md and "to reproduce" not in md
