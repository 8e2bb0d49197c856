"""Sweep one stage's trainer settings with Ray Tune, scored by benchmark results.

    python jobs/sweep.py --config configs/sweeps/default-dpo-beta.yaml
    ray job submit --working-dir . -- python jobs/sweep.py --config configs/sweeps/trlm-dpo-beta.yaml

Stages before the swept one are trained once and reused by every trial. Writes
<storage>/sweeps/<name>/report.md, report.html, trials.json and best.yaml; logs in
<storage>/sweeps/<name>/logs/.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))  # the submitted code, not a stale install

from tinyreason.runtime import fail, init_ray  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="sweep YAML (configs/sweeps/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of the swept curriculum")
    parser.add_argument("--verbose", action="store_true", help="every log line on the console, not only the story")
    args = parser.parse_args(argv)

    from tinyreason import console
    from tinyreason.config.loading import check_storage
    from tinyreason.config.sweeps import load_sweep
    from tinyreason.outputs import Outputs
    from tinyreason.tune.report import write_sweep_report
    from tinyreason.tune.sweep import run_sweep

    with fail.on_error():
        sweep, config = load_sweep(args.config, args.set)  # the sweep and its curriculum, validated
        out = Outputs(check_storage(config.storage.path)).sweep(sweep.name)
        console.setup(out.path / "logs", verbose=args.verbose)
        init_ray(config)
        result = run_sweep(sweep, config)
        report = write_sweep_report(result)
        failed = sum(t.status == "ERROR" for t in result.trials)
        console.say(f"\n{len(result.trials)} trials, {failed} failed; report: {report}")
        if result.best:
            console.say(f"best: {result.best.params} objective={result.best.metrics['objective']:.4f}; "
                        f"config: {report.parent / 'best.yaml'}")
    return fail.exit_code


if __name__ == "__main__":
    sys.exit(main())
