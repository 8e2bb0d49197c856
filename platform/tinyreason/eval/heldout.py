"""Held-out reasoning problems from the synthetic world, answered by generation.

The prompt is the evaluation's (`evaluation.prompt`: one system turn and template for every
model), the decoding `evaluation.decoding` (the seed report's temperature 0.6, top-p 0.95 by
default, seeded), and generation goes through `thinking.generate`, as the lm-eval suite's does:
the answer after `</think>` is graded by `answers.grade`, a trace that never closes counts as no
answer, and a thinking budget applies. The same generations give the reasoning-format health
numbers. A model that thinks is also scored with thinking off (`result["think_off"]`) when
`evaluation.thinking.compare_off` is on. The problems' number combinations never occur in any
training blend (see `world.is_heldout`); a second set words the held-out problems with
templates no training row uses (`data/phrasings.py`), reported as `new_templates`.
"""

from __future__ import annotations

import torch
from transformers import AutoTokenizer

from tinyreason.answers import grade
from tinyreason.config.evaluation import EvalConfig, PromptConfig
from tinyreason.data import synthetic, world
from tinyreason.eval import health, thinking
from tinyreason.model.chat import CHAT_TEMPLATE
from tinyreason.model.presets import load_model
from tinyreason.model.templates import render_kwargs


def generate(model, tok, prompts: list[str], max_new_tokens: int, batch_size: int, sampling: dict,
             think: thinking.Think, seed: int = 0) -> list[thinking.Generation]:
    """Completions of chat prompts (the think prefill is added here), seeded once for the set."""
    tok.padding_side = "left"  # decoder-only generation continues from the right edge
    torch.manual_seed(seed)
    outputs = []
    for i in range(0, len(prompts), batch_size):
        enc = tok([p + think.prefill for p in prompts[i:i + batch_size]], return_tensors="pt", padding=True,
                  add_special_tokens=False)
        outputs += thinking.generate(model, tok, enc["input_ids"], enc["attention_mask"],
                                     max_new_tokens=max_new_tokens, sampling=sampling, think=think)
    return outputs


def chat_prompts(tok, questions: list[str], prompt: PromptConfig | None = None) -> list[str]:
    """Each question as a user turn after the evaluation's system turn (none: the template inserts
    the one the model trained with), in the chat template the
    evaluation names: tinyreason's, or the model's own rendered as in training (model/templates.py:
    the family's fixed render kwargs such as Llama-3's date)."""
    prompt = prompt or PromptConfig()
    template = CHAT_TEMPLATE if prompt.chat_template == "platform" else None
    kwargs = render_kwargs(tok.chat_template) if template is None else {}
    system = [{"role": "system", "content": prompt.system_prompt}] if prompt.system_prompt else []
    return [tok.apply_chat_template(system + [{"role": "user", "content": q}], chat_template=template, tokenize=False,
                                    add_generation_prompt=True, **kwargs)
            for q in questions]


def score(rows: list[dict], gens: list[thinking.Generation]) -> dict:
    """Accuracy, format health and no-answer counts of one set of generations."""
    samples, checks, correct = [], [], 0
    for row, gen in zip(rows, gens):
        g = grade(gen.text, row["answer"])
        correct += g.correct
        checks.append(health.check_output(gen.text, hit_limit=gen.hit_limit))
        samples.append({"id": row["id"], "task": row["task"], "question": row["question"], "gold": row["answer"],
                        "output": gen.text, "thinking": gen.thinking, "answer": g.answer, "grade": g.reason,
                        "correct": g.correct, "think_tokens": gen.think_tokens, "forced_close": gen.forced_close})
    per_task: dict[str, list[bool]] = {}
    for s in samples:
        per_task.setdefault(s["task"], []).append(s["correct"])
    return {
        "accuracy": correct / len(rows) if rows else 0.0,
        "per_task": {t: sum(v) / len(v) for t, v in sorted(per_task.items())},
        "format": health.summarize(checks),
        "thinking": thinking.summarize(gens),
        "n": len(rows),
        "samples": samples,
    }


def evaluate_heldout(model_dir: str, ev: EvalConfig, trust_remote_code: bool = False, revision: str | None = None,
                     seed: int = 0, new_templates: bool = True) -> dict:
    """Accuracy and format health on `ev.heldout_problems` held-out problems; samples kept.
    `seed` (the experiment's) offsets the probe's decoding seed: seed 0 keeps it. With
    `new_templates`, as many held-out problems worded with the held-out template family
    (phrasings no training row uses) are scored too, under "new_templates"."""
    tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code, revision=revision)
    model = load_model(model_dir, trust_remote_code, revision=revision).eval()
    rows = synthetic.eval_rows(ev.heldout_problems, world.EVAL_SEED)
    prompts = chat_prompts(tok, [r["question"] for r in rows], ev.prompt)
    sampling, seed = ev.decoding.sampling(), ev.decoding.seed + seed
    think = thinking.Think(ev.thinking.mode, ev.thinking.budget)
    result = score(rows, generate(model, tok, prompts, ev.max_new_tokens, ev.batch_size, sampling, think, seed))
    if new_templates:
        new = synthetic.eval_rows(ev.heldout_problems, world.EVAL_SEED, "heldout")
        new_prompts = chat_prompts(tok, [r["question"] for r in new], ev.prompt)
        result["new_templates"] = score(new, generate(model, tok, new_prompts, ev.max_new_tokens, ev.batch_size,
                                                      sampling, think, seed))
    result["settings"] = {"decoding": sampling, "seed": seed, "thinking": ev.thinking.mode,
                          "budget": ev.thinking.budget, "system_prompt": ev.prompt.system_prompt,
                          "chat_template": ev.prompt.chat_template}
    if ev.thinking.compare_off and ev.thinking.mode != "off" and thinking.has_think_tokens(tok):
        off = generate(model, tok, prompts, ev.max_new_tokens, ev.batch_size, sampling, thinking.Think("off"), seed)
        result["think_off"] = score(rows, off)
    return result
