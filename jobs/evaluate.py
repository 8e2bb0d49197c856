"""Evaluate one model alone: the config's lm-eval suite, then the held-out probe.

    python jobs/evaluate.py runs/stages/03-dpo-xxxx                  # a stage dir (its model/) or a model dir
    python jobs/evaluate.py runs/stages/03-dpo-xxxx --tasks tinyreason_reasoning,tinyreason_choice --out /tmp/ev
    ray job submit --working-dir . -- python jobs/evaluate.py /data/model --config configs/trlm-135m.yaml

Scores go to OUT/lm_eval_results.json with per-sample outputs next to it
(default OUT: <stage dir>/lm-eval, or <storage.path>/evals/<model dir name>).
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))  # the submitted code, not a stale install

from tinyreason.runtime import fail, init_ray  # noqa: E402

BUILTIN = ("tinyreason_reasoning", "tinyreason_choice")  # the suite when the config names none


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="a model dir, or a stage output dir with model/")
    parser.add_argument("--config", help="experiment YAML (default: configs/default.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    parser.add_argument("--tasks", help="comma-separated lm-eval tasks, replacing the config's list")
    parser.add_argument("--out", help="output dir for lm_eval_results.json and samples")
    args = parser.parse_args(argv)

    from tinyreason import console
    from tinyreason.config.loading import load_config
    from tinyreason.config.sections import TaskSpec
    from tinyreason.eval import harness, tables
    from tinyreason.eval.scores import primary_with_errors
    from tinyreason.evaluation import run_suite_remote
    from tinyreason.storage import Storage

    with fail.on_error():
        cfg = load_config(args.config, args.set)
        model_dir = harness.resolve_model_dir(args.path)
        bench = cfg.evaluation.benchmarks
        names = args.tasks.split(",") if args.tasks else [s.task for s in bench.tasks] or list(BUILTIN)
        known = {s.task: s for s in bench.tasks}  # keep a configured task's few-shot, limit and metric
        bench = bench.model_copy(update={"tasks": [known.get(n.strip(), TaskSpec(task=n.strip())) for n in names]})
        given = Path(args.path).resolve()
        is_stage = model_dir == given / "model"
        out = Path(args.out) if args.out else (
            given / "lm-eval" if is_stage else Path(cfg.storage.path) / "evals" / model_dir.name)
        console.setup(out / "logs")
        init_ray(cfg)
        ev = cfg.evaluation
        result = run_suite_remote(Storage(cfg.storage.path), model_dir, bench, out, cfg.model.trust_remote_code,
                                  thinking=ev.thinking, prompt=ev.prompt)
        console.say("\n" + tables.results_table({given.name: primary_with_errors({"benchmarks": result})}))
        try:  # weights may name tasks that --tasks left out: the scores above still stand
            score = tables.objective(result["primary"], cfg.evaluation.objective.weights, result["scores"])
            console.say(f"{cfg.evaluation.objective.name}: {score:.4f}")
        except ValueError as e:
            console.say(f"{cfg.evaluation.objective.name}: n/a ({e})")
        if result.get("think_off"):
            off = result["think_off"]["primary"]
            console.say("thinking on vs off:\n" + tables.results_table(
                {"thinking on": {k: v for k, v in result["primary"].items() if k in off}, "thinking off": off},
                "thinking on"))
        console.say(f"scores and per-sample outputs: {result['results_file']}")
        _heldout(cfg, model_dir, Path(result["results_file"]).parent)
    return fail.exit_code


def _heldout(cfg, model_dir: Path, out: Path) -> None:
    """The same held-out probe the curriculum runs after each stage: accuracy and <think> health."""
    import ray

    from tinyreason import console
    from tinyreason.eval.heldout import evaluate_heldout

    ev = cfg.evaluation
    if ev.heldout_problems == 0:
        return
    res = ray.get(ray.remote(num_cpus=1)(evaluate_heldout).remote(str(model_dir), ev, cfg.model.trust_remote_code))
    (out / "heldout.json").write_text(json.dumps(res, indent=2))
    f = res["format"]
    draws = (f" (mean of {res['draws']} draws each, ± {res['accuracy_se']:.1%}; pass@{res['draws']} "
             f"{res['pass_at_k']:.1%})" if res.get("draws") else "")
    console.say(f"held-out accuracy {res['accuracy']:.1%} on {res['n']} problems{draws}; "
          f"well-formed <think> {f['well_formed']:.1%}, "
          f"answer after it {f['has_answer']:.1%}, truncated {f['truncated']:.1%}, repetition {f['repetition']:.3f}, "
          f"think words p50/p90 {f['think_tokens_p50']:.0f}/{f['think_tokens_p90']:.0f}; "
          f"no answer {res['thinking']['no_answer']} of {res['thinking']['n']}"  # answers: n problems x draws
          + (f"; thinking off: {res['think_off']['accuracy']:.1%}" if res.get("think_off") else ""))
    if "new_templates" in res:
        new = res["new_templates"]
        console.say(f"held-out template family: accuracy {new['accuracy']:.1%}, "
                    f"well-formed <think> {new['format']['well_formed']:.1%}")


if __name__ == "__main__":
    sys.exit(main())
