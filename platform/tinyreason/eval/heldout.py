"""Held-out reasoning problems from the synthetic world, answered by generation.

Greedy decoding with the chat template applied, the final answer extracted
after `</think>`, exact match against the gold answer; the same generations
give the reasoning-format health numbers. The problems' number combinations
never occur in any training blend (see `synthetic.is_heldout`); a second set words
held-out problems with templates no training row uses (`data/phrasings.py`).
"""

from __future__ import annotations

from tinyreason.data import synthetic
from tinyreason.eval import health

EVAL_SEED = 20261122  # fixed: every stage and every run is scored on the same problems


def generate(model, tok, prompts: list[str], max_new_tokens: int, batch_size: int) -> list[tuple[str, bool]]:
    """Greedy completions; each with whether it hit the token limit without finishing."""
    import torch

    tok.padding_side = "left"  # decoder-only generation continues from the right edge
    eos = tok.convert_tokens_to_ids(tok.eos_token)
    outputs = []
    for i in range(0, len(prompts), batch_size):
        enc = tok(prompts[i:i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                                 pad_token_id=tok.pad_token_id)
        for row in out[:, enc["input_ids"].shape[1]:]:
            ids = row.tolist()
            finished = eos in ids
            ids = ids[: ids.index(eos)] if finished else ids
            outputs.append((tok.decode(ids, skip_special_tokens=False).replace(tok.pad_token, ""), not finished))
    return outputs


def chat_prompts(tok, questions: list[str]) -> list[str]:
    return [
        tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in questions
    ]


def score(model, tok, rows: list[dict], max_new_tokens: int, batch_size: int) -> dict:
    """Exact-match accuracy, per-family accuracy and <think> health of greedy answers to rows."""
    gens = generate(model, tok, chat_prompts(tok, [r["question"] for r in rows]), max_new_tokens, batch_size)
    samples, checks, correct = [], [], 0
    for row, (text, hit_limit) in zip(rows, gens):
        answer = health.extract_answer(text)
        ok = answer.strip().lower() == row["answer"].strip().lower()
        correct += ok
        checks.append(health.check_output(text, hit_limit=hit_limit))
        samples.append({"id": row["id"], "task": row["task"], "question": row["question"], "gold": row["answer"],
                        "output": text, "answer": answer, "correct": ok})
    per_task: dict[str, list[bool]] = {}
    for s in samples:
        per_task.setdefault(s["task"], []).append(s["correct"])
    return {
        "accuracy": correct / len(rows) if rows else 0.0,
        "per_task": {t: sum(v) / len(v) for t, v in sorted(per_task.items())},
        "format": health.summarize(checks),
        "n": len(rows),
        "samples": samples,
    }


def evaluate_heldout(model_dir: str, n: int, max_new_tokens: int = 96, batch_size: int = 16,
                     trust_remote_code: bool = False, new_templates: bool = True) -> dict:
    """Accuracy and format health on n held-out problems; samples kept for inspection.

    With `new_templates`, the same number of held-out problems worded with the held-out
    template family (phrasings no training row uses) is scored too, under "new_templates"."""
    import torch
    from transformers import AutoTokenizer

    from tinyreason.model.presets import load_model

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    model = load_model(model_dir, trust_remote_code).eval()
    result = score(model, tok, synthetic.eval_rows(n, EVAL_SEED), max_new_tokens, batch_size)
    if new_templates:
        result["new_templates"] = score(model, tok, synthetic.eval_rows(n, EVAL_SEED, "heldout"),
                                        max_new_tokens, batch_size)
    return result
