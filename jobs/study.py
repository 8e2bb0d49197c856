"""Run a study: whole curricula (arms) compared side by side over seeds, in one command.

    python jobs/study.py --config configs/studies/srlm.yaml          # SFT, DPO, GRPO, distillation arms
    python jobs/study.py --config configs/studies/scaling.yaml       # from-scratch sizes, power-law fits
    ray job submit --working-dir . -- python jobs/study.py --config configs/studies/trlm-epochs.yaml

Arms that share stages train them once. Writes <storage>/studies/<name>/report.md,
report.html and results.json; each arm's own curriculum report is in its run record.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))  # the submitted code, not a stale install

from tinyreason.runtime import fail, init_ray  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="study YAML (configs/studies/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of the base experiment, for every arm")
    parser.add_argument("--verbose", action="store_true", help="every log line on the console, not only the story")
    args = parser.parse_args(argv)

    from tinyreason import console
    from tinyreason.config.loading import check_storage
    from tinyreason.config.studies import load_study
    from tinyreason.outputs import Outputs
    from tinyreason.study import run_study
    from tinyreason.study_report import print_study_summary, write_study_report

    with fail.on_error():
        study, configs = load_study(args.config, args.set)  # every (arm, seed) validated before anything runs
        store = check_storage(next(iter(configs.values())).storage.path)
        console.setup(Outputs(store).study(study.name).path / "logs", verbose=args.verbose)
        init_ray(next(iter(configs.values())))
        result = run_study(study, configs, store)
        report = write_study_report(result)
        print_study_summary(result, report)
    return fail.exit_code


if __name__ == "__main__":
    sys.exit(main())
