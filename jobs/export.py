"""Export a trained model as GGUF (f16 and q8_0 by default) for llama.cpp, Ollama and LM Studio,
each file checked by loading it back through transformers (same greedy tokens for f16, logits
within 5e-2 for q8_0) before it is kept. The chat template goes in without transformers-only
tags, as plain Jinja2 renders it.

    python jobs/export.py runs/stages/04-dpo-<key>                        # a stage dir: -> its gguf/
    python jobs/export.py runs/stages/04-dpo-<key>/model --outtype q8_0 --out exports/
    llama-cli -m runs/stages/04-dpo-<key>/gguf/04-dpo-<key>.q8_0.gguf -cnv    # then, with llama.cpp

Only Llama-architecture models are written (every tinyreason preset and SmolLM2); another
architecture fails in one line naming the ones that are.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))  # the submitted code, not a stale install

from tinyreason.runtime import fail  # noqa: E402

log = logging.getLogger("tinyreason.export")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="a model dir, or a stage output dir with model/")
    parser.add_argument("--outtype", nargs="+", default=["f16", "q8_0"], help="f16, q8_0 and/or f32")
    parser.add_argument("--out", help="output dir (default: <stage dir>/gguf, or <model dir>/../gguf)")
    args = parser.parse_args(argv)

    from tinyreason import console
    from tinyreason.eval.harness import resolve_model_dir
    from tinyreason.model.gguf_export import export_checked

    with fail.on_error():
        model_dir = resolve_model_dir(args.path)
        out = Path(args.out) if args.out else model_dir.parent / "gguf"
        console.setup(out / "logs")
        log.info("exporting %s as GGUF %s", model_dir, ", ".join(args.outtype))
        records = export_checked(model_dir, out, args.outtype)
        (out / "gguf_export.json").write_text(json.dumps({"model_dir": str(model_dir), "files": records}, indent=2))
        for r in records:
            log.info("%s: %.1f MB; read back: %d/%d prompts with the same greedy tokens, max |logit diff| %.2g",
                     r["file"], r["bytes"] / 1e6, r["same_greedy_tokens"], r["prompts"], r["max_abs_logit_diff"])
    return fail.exit_code


if __name__ == "__main__":
    sys.exit(main())
