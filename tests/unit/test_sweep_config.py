"""Sweep configs validate as a whole: every point of the space is a valid stage."""

import glob

import pytest
import yaml

from tinyreason.config.base import CONFIG_DIR, ConfigError
from tinyreason.config.loading import load_config
from tinyreason.config.sweeps import load_sweep
from tinyreason.eval.scores import benchmark_scores, objective_value
from tinyreason.tune.sweep import search_space, trial_stage

SWEEPS = sorted(glob.glob(str(CONFIG_DIR / "sweeps" / "*.yaml")))


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.rsplit("/", 1)[-1])
def test_every_sweep_config_validates(path):
    sweep, cfg = load_sweep(path)
    assert sweep.stage in [s.name for s in cfg.stages]
    assert set(search_space(sweep)) == set(sweep.space)


def _write(tmp_path, **fields):
    raw = {"name": "t", "curriculum": "micro.yaml", "stage": "dpo", "space": {"beta": {"grid": [0.1]}}}
    raw.update(fields)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_space_values_are_validated_against_the_stage(tmp_path):
    with pytest.raises(ConfigError, match=r"(?s)space.learning_rate=-0.1.*greater than 0"):
        load_sweep(_write(tmp_path, space={"learning_rate": {"grid": [1e-3, -0.1]}}))
    with pytest.raises(ConfigError, match="not a TRL dpo argument"):
        load_sweep(_write(tmp_path, space={"betta": {"grid": [0.1]}}))
    with pytest.raises(ConfigError, match="no stage named 'ppo'"):
        load_sweep(_write(tmp_path, stage="ppo"))
    with pytest.raises(ConfigError, match="exactly one of grid, choice, uniform, loguniform"):
        load_sweep(_write(tmp_path, space={"beta": {"grid": [0.1], "uniform": [0.1, 0.2]}}))


def test_trial_stage_fills_in_the_point():
    stage = load_config(CONFIG_DIR / "micro.yaml").stage("dpo")
    assert trial_stage(stage, {"beta": 0.3, "learning_rate": 2e-5}).trainer.beta == 0.3


def test_objective_is_a_weighted_mean_and_names_missing_benchmarks():
    ev = {"accuracy": 0.5, "format": {"well_formed": 1.0}}
    assert benchmark_scores(ev) == {"heldout/accuracy": 0.5, "heldout/well_formed": 1.0}
    assert objective_value(ev, {}) == 0.5  # no suite: the held-out accuracy
    assert objective_value(ev, {"heldout/accuracy": 1, "heldout/well_formed": 3}) == pytest.approx(0.875)
    with pytest.raises(ValueError, match="'gsm8k' names a benchmark that was not scored"):
        objective_value(ev, {"gsm8k": 1.0})
    suite = {**ev, "benchmarks": {"primary": {"a": 0.2, "b": 0.4}, "scores": {"a": {"acc": 0.2}, "b": {"em": 0.4}}}}
    assert objective_value(suite, {}) == pytest.approx(0.3)  # a suite: the mean of its tasks
    assert benchmark_scores(suite)["b/em"] == 0.4


def test_markdown_report_becomes_one_standalone_html_page(tmp_path):
    from tinyreason.render import markdown_to_html

    (tmp_path / "p.png").write_bytes(b"\x89PNG fake")
    page = markdown_to_html("# T\n\n| a | b |\n| --- | --- |\n| 1 | <2> |\n\n![p](p.png)\n", tmp_path, "T")
    assert "<th>a</th>" in page and "<td>1</td>" in page and "&lt;2&gt;" in page
    assert "data:image/png;base64," in page and "---" not in page
