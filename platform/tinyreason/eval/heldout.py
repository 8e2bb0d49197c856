"""Held-out reasoning problems from the synthetic world, answered by generation.

The prompt is the evaluation's (`evaluation.prompt`: one system turn and template for every
model), the decoding `evaluation.decoding` (the seed report's temperature 0.6, top-p 0.95 by
default, seeded), and generation goes through `thinking.generate`, as the lm-eval suite's does:
the answer after `</think>` is graded by `answers.grade`, a trace that never closes counts as no
answer, and a thinking budget applies. The same generations give the reasoning-format health
numbers. With `evaluation.heldout_samples` k > 1 each problem is answered k times (one seeded
stream: the first draw is the k = 1 evaluation) and the accuracy is the mean over the draws, the
pass@1 that the R1 report estimates from k samples at temperature 0.6, with its standard error
over problems and pass@k beside it: the draw-to-draw luck of one sample per problem is as large
as most stage-to-stage differences. A model that thinks is also scored with thinking off
(`result["think_off"]`) when `evaluation.thinking.compare_off` is on. The problems' number
combinations never occur in any training blend (see `world.is_heldout`); a second set words the
held-out problems with templates no training row uses (`data/phrasings.py`), reported as
`new_templates`.
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
from tinyreason.stats import pass_at_k_over_items


def generate(model, tok, prompts: list[str], max_new_tokens: int, batch_size: int, sampling: dict,
             think: thinking.Think, seed: int = 0, draws: int = 1) -> list[list[thinking.Generation]]:
    """`draws` sets of completions of chat prompts (the think prefill is added here), seeded once:
    draw i continues the random stream of draw i - 1, so the first is the same at any `draws`."""
    tok.padding_side = "left"  # decoder-only generation continues from the right edge
    torch.manual_seed(seed)
    encs = [tok([p + think.prefill for p in prompts[i:i + batch_size]], return_tensors="pt", padding=True,
                add_special_tokens=False) for i in range(0, len(prompts), batch_size)]
    return [[g for enc in encs for g in thinking.generate(model, tok, enc["input_ids"], enc["attention_mask"],
                                                           max_new_tokens=max_new_tokens, sampling=sampling,
                                                           think=think)]
            for _ in range(draws)]


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


def score(rows: list[dict], draws: list[list[thinking.Generation]]) -> dict:
    """Accuracy, format health and no-answer counts of k draws of generations (one per row each).
    Accuracy is the mean over draws; with k > 1, `accuracy_se` is the standard error of the mean
    of per-problem accuracies and `pass_at_k` the share of problems right at least once. The
    samples are the first draw's, each with `right_of_k`; health counts every draw."""
    k = len(draws)
    grades = [[grade(gen.text, row["answer"]) for row, gen in zip(rows, gens)] for gens in draws]
    right = [sum(d[i].correct for d in grades) for i in range(len(rows))]
    per_problem = [r / k for r in right]
    samples = []
    for row, gen, g, r in zip(rows, draws[0], grades[0], right):
        samples.append({"id": row["id"], "task": row["task"], "question": row["question"], "gold": row["answer"],
                        "output": gen.text, "thinking": gen.thinking, "answer": g.answer, "grade": g.reason,
                        "correct": g.correct, "think_tokens": gen.think_tokens, "forced_close": gen.forced_close,
                        **({"right_of_k": r} if k > 1 else {})})
    per_task: dict[str, list[float]] = {}
    for row, acc in zip(rows, per_problem):
        per_task.setdefault(row["task"], []).append(acc)
    gens = [g for d in draws for g in d]
    result = {
        "accuracy": sum(per_problem) / len(rows) if rows else 0.0,
        "per_task": {t: sum(v) / len(v) for t, v in sorted(per_task.items())},
        "format": health.summarize([health.check_output(g.text, hit_limit=g.hit_limit) for g in gens]),
        "thinking": thinking.summarize(gens),
        "n": len(rows),
        "samples": samples,
    }
    if k > 1 and rows:  # pass@1 over k draws is the accuracy above; its se is over problems
        result.update(draws=k, accuracy_se=pass_at_k_over_items(right, k, 1).se,
                      pass_at_k=pass_at_k_over_items(right, k, k).value)
    return result


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

    def answers(prompts: list[str], think: thinking.Think) -> list[list[thinking.Generation]]:
        return generate(model, tok, prompts, ev.max_new_tokens, ev.batch_size, sampling, think, seed,
                        ev.heldout_samples)

    result = score(rows, answers(prompts, think))
    if new_templates:
        new = synthetic.eval_rows(ev.heldout_problems, world.EVAL_SEED, "heldout")
        result["new_templates"] = score(new, answers(chat_prompts(tok, [r["question"] for r in new], ev.prompt), think))
    result["settings"] = {"decoding": sampling, "seed": seed, "thinking": ev.thinking.mode,
                          "budget": ev.thinking.budget, "system_prompt": ev.prompt.system_prompt,
                          "chat_template": ev.prompt.chat_template, "samples_per_problem": ev.heldout_samples}
    if ev.thinking.compare_off and ev.thinking.mode != "off" and thinking.has_think_tokens(tok):
        result["think_off"] = score(rows, answers(prompts, thinking.Think("off")))
    return result
