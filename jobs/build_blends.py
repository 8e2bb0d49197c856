"""Build and inspect data blends alone, printing each one's composition table.

    python jobs/build_blends.py --config configs/default.yaml                 # every stage's blend
    python jobs/build_blends.py --config configs/trlm-135m.yaml --stage dpo   # one stage
    python jobs/build_blends.py --blend configs/blends/trlm-stage-1.yaml --kind sft --out runs/blends
    ray job submit --working-dir . -- python jobs/build_blends.py --config configs/trlm-135m.yaml

With --config, blends go where the curriculum looks for them (storage.path/blends)
and are decontaminated against the config's evaluation set, so a later curriculum
run reuses them. --eval-file adds local benchmark files (JSON Lines, question/text).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))  # the submitted code, not a stale install

from tinyreason.runtime import fail, init_ray  # noqa: E402


def _targets(args):
    """(label, BlendConfig, row schema, out_dir, seed, decontaminator, think policy, reader) for each blend to
    build. `reader()`, called once Ray runs, makes the reader of a blend's teacher sources (tinyreason/teachers.py)."""
    from tinyreason import teachers
    from tinyreason.config.base import ConfigError
    from tinyreason.config.loading import load_blend, load_config
    from tinyreason.context import RunContext
    from tinyreason.data import decontam
    from tinyreason.eval.sets import decontaminator_for
    from tinyreason.train import registry

    if args.blend:
        if args.config or args.stage:
            raise ConfigError("give either --blend (with --kind) or --config (with --stage), not both")
        if not args.kind:
            raise ConfigError(f"--blend needs --kind ({', '.join(registry.names())}): it picks the row schema")
        texts = decontam.eval_texts_from_files(args.eval_file) if args.eval_file else []
        if args.heldout:
            texts += decontam.eval_texts_from_synthetic(args.heldout)
        decon = decontam.Decontaminator(texts, n=args.n or decontam.DEFAULT_N) if texts else None
        schema = registry.get(args.kind).schema
        out = Path(args.out or "runs/blends")
        return [(args.blend, load_blend(args.blend), schema, out, args.seed, decon, "reject", None)]
    config = load_config(args.config, args.set)
    dc = config.evaluation.decontamination  # the curriculum's own settings, so the cache keys match
    dc.enabled = dc.enabled and not args.no_decontaminate
    dc.files = [*dc.files, *args.eval_file]
    dc.n = args.n or dc.n
    decon = decontaminator_for(config.evaluation)
    stages = [config.stage(args.stage)] if args.stage else config.stages
    out = Path(args.out or Path(config.storage.path) / "blends")
    ctx = RunContext.of(config)  # teachers named by stage resolve to what the experiment's last run trained
    return [(f"stage {s.name}", s.data.blend_config, registry.get(s.kind).schema, out, config.seed, decon,
             s.data.think_rows, lambda s=s: teachers.reader_for(ctx, s.data.blend_config, s.name)) for s in stages]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="experiment YAML: build its stages' blends (default: configs/default.yaml)")
    parser.add_argument("--stage", help="only this stage's blend")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    parser.add_argument("--blend", help="a blend YAML to build on its own (needs --kind)")
    parser.add_argument("--kind", help="stage kind of --blend (a registered kind: sft, dpo, ...)")
    parser.add_argument("--out", help="output dir (default: storage.path/blends, or runs/blends with --blend)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed for --blend (configs use their own)")
    parser.add_argument("--eval-file", action="append", default=[], help="benchmark JSON Lines to decontaminate against")
    parser.add_argument("--heldout", type=int, default=0, help="--blend: also decontaminate against N synthetic problems")
    parser.add_argument("--n", type=int, help="n-gram length (default 13, or 8 for synthetic-only eval sets)")
    parser.add_argument("--no-decontaminate", action="store_true", help="skip decontamination (changes the cache key)")
    args = parser.parse_args(argv)
    if not args.blend and not args.config:
        args.config = "configs/default.yaml"

    from tinyreason import console
    from tinyreason.data.blend import build_blend
    from tinyreason.data.card import composition_table

    with fail.on_error():
        targets = _targets(args)  # configs validated whole, before Ray starts
        init_ray()
        for label, blend, schema, out, seed, decon, think, reader in targets:
            b = build_blend(blend, schema, out, seed=seed, decontaminate=decon, think=think,
                            reader=reader() if reader else None)
            m = b.manifest
            state = "cached" if b.cached else f"built in {m.get('build_seconds', '?')} s"
            console.say(f"\n{label}: {m['name']} ({schema} rows), {b.rows:,} rows, {state}, content "
                        f"{m['content_hash']}\n  {b.path}/card.md\n\n{composition_table(m)}")
    return fail.exit_code


if __name__ == "__main__":
    sys.exit(main())
