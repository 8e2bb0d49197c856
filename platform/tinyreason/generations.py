"""Sample generations in the reports: what the scores mean, in the model's own words.

After a reasoning stage, the first few held-out problems (the same ones after every
stage, not picked by outcome) with the model's full greedy output, its `<think>` part and
its answer in separate blocks, marked correct or wrong; a GRPO stage's completions as its
reward functions scored them during training (samples.jsonl); a pretrain stage's
continuations of fixed prompts (prompt and continuation together, as the model read on).
Generations are shown in fenced blocks inside `<details>` (render.md_details_parts):
verbatim, so markdown or tags a model writes never render.
"""

from __future__ import annotations

from tinyreason.answers import split_thinking
from tinyreason.eval.reasoning_report import decoding_text
from tinyreason.render import md_details_parts

SHOWN = 4  # held-out problems per stage: enough to see the failure modes, short enough to read
TRAINING_SHOWN = 2  # GRPO completions from the first and from the last logged step each
ANSWER_WIDTH = 40  # characters of an extracted answer shown in a sample's summary line; the full output is below


def _parts(text: str) -> list[tuple[str, str]]:
    """A generation as labelled blocks: its thinking and its answer when it opened <think>."""
    split = split_thinking(text)
    if not split.opened and not split.closed:
        return [("output (no <think> block)", text)]
    parts = [("thinking, inside <think> ... </think>" if split.closed else "thinking, <think> never closed",
              (split.thinking or "").strip())]
    if split.closed:
        parts.append(("answer, after </think>", (split.answer or "").strip()))
    return parts


def _short(answer, width: int = ANSWER_WIDTH) -> str:
    """The extracted answer as the summary line shows it: a looping model's answer can run on."""
    text = " ".join(str(answer or "").split())
    return "nothing" if not text else text if len(text) <= width else text[:width - 1].rstrip() + "…"


def heldout_samples(evaluation: dict | None, k: int = SHOWN) -> list[str]:
    """The first k held-out problems with the model's output, as folded blocks (the first one
    open, to be read without a click, as the reference report's example trace); [] when the
    evaluation kept no samples."""
    samples = (evaluation or {}).get("samples") or []
    blocks = []
    for i, s in enumerate(samples[:k]):
        mark = "✓ correct" if s.get("correct") else "✗ wrong"
        summary = f"{mark}: {s['question']} (expected {s['gold']}, answered {_short(s.get('answer'))})"
        blocks.append(md_details_parts(summary, _parts(s.get("output", "")), open_=i == 0))
    return blocks


def heldout_intro(evaluation: dict, k: int = SHOWN) -> str:
    n, acc = evaluation.get("n") or len(evaluation.get("samples") or []), evaluation.get("accuracy")
    shown = min(k, len(evaluation.get("samples") or []))
    draws = evaluation.get("draws")
    return (f"The first {shown} of {n} held-out problems (the same ones after every stage, not chosen by outcome), "
            f"{_decoding((evaluation.get('settings') or {}).get('decoding'))}; accuracy over all {n}: {acc:.1%}"
            + (f", the mean of {draws} draws per problem (the first shown)" if draws else "") + "."
            if acc is not None else "")


def _decoding(sampling: dict | None) -> str:
    """How the shown answers were generated, from the evaluation's recorded settings."""
    if not sampling:  # an evaluation cached before its settings were recorded
        return "as the evaluation decodes"
    if not sampling.get("do_sample"):
        return "greedy decoding"
    return f"sampled at {decoding_text(sampling)}, seeded"


def training_samples(rows: list[dict], k: int = TRAINING_SHOWN) -> list[str]:
    """A GRPO stage's logged completions (samples.jsonl): k from its first logged step and k
    from its last, each with the reward the reward functions gave it."""
    if not rows:
        return []
    steps = sorted({r.get("step", 0) for r in rows})
    picked = [r for r in rows if r.get("step", 0) == steps[0]][:k]
    if len(steps) > 1:
        picked += [r for r in rows if r.get("step", 0) == steps[-1]][:k]
    blocks = []
    for r in picked:
        reward = r.get("reward")
        summary = (f"step {r.get('step', 0)}, reward {reward:.2f}" if isinstance(reward, (int, float))
                   else f"step {r.get('step', 0)}") + f": {r.get('prompt', '')}"
        if r.get("answer") is not None:
            summary += f" (expected {r['answer']})"
        blocks.append(md_details_parts(summary, _parts(r.get("completion", ""))))
    return blocks


def pretrain_samples(name: str, pretrain: dict) -> list[str]:
    """One model's pre-training evaluation: its perplexity line and a folded block per prompt
    holding the greedy and the sampled continuation."""
    ppl = (f"Held-out perplexity {pretrain['perplexity']:.3f} over {pretrain['tokens']:,} tokens of "
           f"{pretrain['documents']:,} documents." if pretrain.get("perplexity") is not None
           else "No held-out split to score.")
    blocks = [md_details_parts(f"prompt: {s['prompt']}", [("greedy", s["prompt"] + s["greedy"]),
                                                          ("sampled", s["prompt"] + s["sampled"])])
              for s in pretrain.get("samples") or []]
    return [f"### {name}", "", ppl, "", *blocks, ""] if blocks else []
