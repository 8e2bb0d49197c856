"""What a DPO stage moved: the log-likelihood of each preference pair's answers, before and after.

    python bench/dpo_shift.py runs/stages/02-reasoning-<key>/model runs/stages/03-dpo-<key>/model
    python bench/dpo_shift.py PARENT DPO --rows prefs.jsonl --out bench/results/dpo_shift_v2.json

Scores the default's preference rows (`data/synthetic.preference_rows`, or a JSON Lines file of
prompt/chosen/rejected rows) under the parent and under the DPO stage's export, through the
models' own chat template, and reports per failure mode (a wrong answer, a malformed `<think>`,
rambling) the mean change in nats of the chosen and of the rejected answer. A DPO stage that
adds should push the wrong answers down and their right twins up; held-out accuracy alone
does not say which pairs took the update. Also the relative change of the weights.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402

OUT = B.RESULTS / "dpo_shift.json"
THINK = re.compile(r"<think>\n(.+)\n</think>\nThe answer is (\S+)\.", re.S)


def failure_mode(chosen: str, rejected: str) -> str:
    """Pure: which failure a rejected answer shows beside its chosen twin."""
    good, bad = THINK.fullmatch(chosen), THINK.fullmatch(rejected)
    if not bad or rejected.count("<think>") != 1:
        return "malformed"
    if good and bad[2] != good[2]:
        return "wrong"
    return "rambling"


def answer_logp(model, tok, prompt: list[dict], answer: str) -> float:
    """Sum of the answer's token log-probabilities after the templated prompt, its end of turn included."""
    import torch

    head = tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    ids = tok(head + answer + tok.eos_token, return_tensors="pt", add_special_tokens=False)["input_ids"]
    start = len(tok(head, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        logp = model(ids).logits[0, :-1].log_softmax(-1).gather(1, ids[0, 1:, None])[:, 0]
    return float(logp[start - 1:].sum())


def weight_change(a: str, b: str) -> float:
    from safetensors.torch import load_file

    x, y = load_file(f"{a}/model.safetensors"), load_file(f"{b}/model.safetensors")
    return float((sum(((x[k] - y[k]) ** 2).sum() for k in x) / sum((x[k] ** 2).sum() for k in x)).sqrt())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("parent")
    p.add_argument("dpo")
    p.add_argument("--rows", help="JSON Lines preference rows (default: the synthetic generator's)")
    p.add_argument("-n", type=int, default=300, help="pairs scored (default 300)")
    p.add_argument("--out", type=Path, default=None, help=f"default {OUT.name}")
    p.add_argument("--note")
    a = p.parse_args(argv)

    import torch
    from transformers import AutoTokenizer

    from tinyreason.data import synthetic
    from tinyreason.model.presets import load_model

    torch.set_num_threads(2)
    if a.rows:
        rows = [json.loads(line) for line in Path(a.rows).read_text().splitlines()[:a.n]]
    else:
        rows = synthetic.preference_rows(a.n, 0)
    tok = AutoTokenizer.from_pretrained(a.parent)
    before, after = load_model(a.parent, False).eval(), load_model(a.dpo, False).eval()
    shifts: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        chosen, rejected = r["chosen"][0]["content"], r["rejected"][0]["content"]
        d = [answer_logp(after, tok, r["prompt"], t) - answer_logp(before, tok, r["prompt"], t)
             for t in (chosen, rejected)]
        shifts.setdefault(failure_mode(chosen, rejected), []).append((d[0], d[1]))
    modes = {m: {"pairs": len(v), "chosen_nats": round(sum(c for c, _ in v) / len(v), 3),
                 "rejected_nats": round(sum(r for _, r in v) / len(v), 3)} for m, v in sorted(shifts.items())}
    record = {"name": "dpo_shift", "date": B.DATE, "machine": B.machine(), "command": B.command(__file__, argv),
              "parent": a.parent, "dpo": a.dpo, "rows": a.rows or "synthetic.preference_rows", "pairs": len(rows),
              "relative_weight_change": round(weight_change(a.parent, a.dpo), 5), "modes": modes}
    B.write_record(a.out or OUT, record, a.note)
    for m, v in modes.items():
        B.log(f"{m}: {v['pairs']} pairs, chosen {v['chosen_nats']:+.3f} nats, rejected {v['rejected_nats']:+.3f} nats")


if __name__ == "__main__":
    main()
