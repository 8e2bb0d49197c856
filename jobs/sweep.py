"""Sweep one stage's trainer settings with Ray Tune, scored by benchmark results.

    python jobs/sweep.py --config configs/sweeps/default-dpo-beta.yaml
    ray job submit --working-dir . -- python jobs/sweep.py --config configs/sweeps/trlm-dpo-beta.yaml

Stages before the swept one are trained once and reused by every trial. Writes
<storage>/sweeps/<name>/report.md, report.html, trials.json and best.yaml.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))

from tinyreason.runtime import fail, init_ray  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="sweep YAML (configs/sweeps/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of the swept curriculum")
    args = parser.parse_args(argv)

    from tinyreason.config import load_sweep
    from tinyreason.tune.report import write_sweep_report
    from tinyreason.tune.sweep import run_sweep

    with fail.on_error():
        sweep, config = load_sweep(args.config, args.set)  # the sweep and its curriculum, validated
        init_ray(config)
        result = run_sweep(sweep, config)
        report = write_sweep_report(result)
        failed = sum(t.status == "ERROR" for t in result.trials)
        print(f"\n{len(result.trials)} trials, {failed} failed; report: {report}")
        if result.best:
            print(f"best: {result.best.params} objective={result.best.metrics['objective']:.4f}; "
                  f"config: {report.parent / 'best.yaml'}")
    return fail.exit_code


if __name__ == "__main__":
    sys.exit(main())
