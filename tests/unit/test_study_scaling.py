"""The scaling section of a study report, on hand-made arms: a known exponent is recovered,
and points that follow no power law are called a poor fit in the report's words."""

import json
from types import SimpleNamespace as NS

import numpy as np

from tinyreason.stats import fit_power_law
from tinyreason.study_scaling import scaling_section


def _result(tmp_path, sizes, losses):
    arms, runs = [], {}
    for i, (n, loss) in enumerate(zip(sizes, losses)):
        base = tmp_path / f"base{i}"
        base.mkdir()
        (base / "manifest.json").write_text(json.dumps({"parameters": n}))
        stage = NS(stage=NS(name="pretrain"), evaluation={"pretrain": {"nll": loss}},
                   metrics=[{"num_input_tokens_seen": 100_000}])
        arms.append(NS(name=f"size{i}"))
        runs[f"size{i}"] = [NS(result=NS(stages=[stage], base=NS(path=str(base))))]
    study = NS(arms=arms, scaling=NS(stage="pretrain", extrapolate=10.0))
    return NS(study=study, runs_of=lambda arm: runs[arm])


def test_a_known_exponent_is_recovered_within_two_percent_and_drawn(tmp_path):
    sizes = np.geomspace(2e5, 2e7, 6)
    rng = np.random.default_rng(0)
    losses = 40.0 * sizes ** -0.12 * np.exp(rng.normal(0, 0.005, size=6))
    section = scaling_section(_result(tmp_path, sizes, losses), tmp_path)
    fit = section["results"]["parameters"]
    assert abs(fit["b"] - (-0.12)) / 0.12 < 0.02 and fit["quality"] == "good"
    assert fit["interval"][0] < fit["prediction"] < fit["interval"][1]
    assert (tmp_path / "scaling.png").stat().st_size > 10_000
    assert any("good fit" in line for line in section["markdown"])


def test_points_that_follow_no_power_law_are_called_a_poor_fit(tmp_path):
    sizes = np.geomspace(2e5, 2e7, 6)
    losses = [3.0, 2.0, 1.5, 1.5, 2.0, 3.0]  # a valley: no single exponent describes it
    section = scaling_section(_result(tmp_path, sizes, losses), tmp_path)
    assert section["results"]["parameters"]["quality"] == "poor"
    assert any("poor fit" in line for line in section["markdown"])
    assert fit_power_law(sizes, losses).quality == "poor"
