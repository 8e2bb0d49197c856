"""Run a curriculum: pretrain -> chat SFT -> <think> SFT -> DPO -> GRPO (the config's stages), then the report.

    python jobs/curriculum.py                                  # embedded default, local Ray, CPU
    python jobs/submit.py -- python jobs/curriculum.py --config configs/trlm-135m.yaml   # ray job submit + git
    python jobs/curriculum.py --set stages.dpo.trainer.beta=0.2 --set storage.path=/data/runs
    python jobs/curriculum.py --reuse-stale        # keep stages trained by older libraries or code, marked
    python jobs/curriculum.py --stages pretrain,sft    # only these stages, in this order (each from the last)

Each run writes its own record, runs/<experiment>/<run id>/ (LATEST names the newest): config,
report, provenance.json (git commit and diff, pip freezes, versions, machines, cluster), logs.

The console tells the run's story; everything (Ray, the workers, TRL) is in the run's
logs/driver.log. --verbose shows it all on the console instead.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))  # the submitted code, not a stale install

from tinyreason.runtime import fail, init_ray  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="experiment YAML (default: configs/default.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    parser.add_argument("--verbose", action="store_true", help="every log line on the console, not only the story")
    parser.add_argument("--stages", metavar="NAME,...",
                        help="run only these of the config's stages, in this order: a prefix to look at early, "
                             "or one stage again; trained stages are reused as always")
    parser.add_argument("--reuse-stale", action="store_true",
                        help="reuse stages trained by other library versions or platform code (reuse_stale: true)")
    args = parser.parse_args(argv)
    if args.reuse_stale:
        args.set.append("reuse_stale=true")

    from tinyreason import console
    from tinyreason.config.loading import check_storage, load_config
    from tinyreason.curriculum import run_curriculum
    from tinyreason.outputs import Outputs
    from tinyreason.report import print_summary, write_report

    with fail.on_error():
        stages = args.stages.split(",") if args.stages is not None else None
        config = load_config(args.config, args.set, stages)  # validated whole, before Ray starts
        run = Outputs(check_storage(config.storage.path)).run(config.name)
        console.setup(run.logs_dir, verbose=args.verbose)
        init_ray(config)
        result = run_curriculum(config, run)
        report = write_report(result)
        print_summary(result, report)
    return fail.exit_code


if __name__ == "__main__":
    sys.exit(main())
