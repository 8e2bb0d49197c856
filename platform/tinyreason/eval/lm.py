"""lm-eval's HF model, fit for reasoning models: what each task's metric sees is the answer after
`</think>`, and every generation (thinking included) is recorded for the per-sample files.

`ReasoningHFLM` is lm-eval's `HFLM` with its `generate_until` replaced by `thinking.generate`:
lm-eval's own `think_end_token` cannot serve here, because its HF path decodes with
skip_special_tokens=True (a special `</think>` is gone before the split), throws the thinking
away, and hands an unclosed trace to the metric whole. Log-likelihood tasks run unchanged.

Imported only inside the evaluation task (it imports lm_eval at module level: ~3.5 s).
"""

from __future__ import annotations

import json
from collections import defaultdict

import torch
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs

from tinyreason.eval import thinking

SAMPLING_KEYS = ("do_sample", "temperature", "top_p", "top_k")


class Recorder:
    """Every generation of a run, by task and document, in repeat order (as lm-eval's `resps`)."""

    def __init__(self) -> None:
        self.by_task: dict[str, dict[int, list[thinking.Generation]]] = defaultdict(lambda: defaultdict(list))

    def add(self, request, generation: thinking.Generation) -> None:
        self.by_task[request.task_name][request.doc_id].append(generation)

    def clear(self) -> None:
        self.by_task.clear()


def settings(gen_kwargs: dict, default_max: int, eos: str) -> tuple[dict, list[str], int, int | None]:
    """A request's (sampling, stop sequences, max new tokens, seed), read the way lm-eval reads them."""
    kwargs = dict(normalize_gen_kwargs(gen_kwargs, default_max))
    seed = kwargs.pop("seed", None)
    until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
    max_new = kwargs.pop("max_gen_toks")
    sampling = {k: kwargs[k] for k in SAMPLING_KEYS if kwargs.get(k) is not None}
    if not sampling.get("do_sample"):
        sampling = {"do_sample": False}  # greedy: no temperature for HF to warn about
    return sampling, until, max_new, seed


def groups(requests) -> dict[str, list[int]]:
    """Request indices by generation settings, each group in request order."""
    out: dict[str, list[int]] = defaultdict(list)
    for i, req in enumerate(requests):
        out[json.dumps(req.args[1], sort_keys=True, default=str)].append(i)
    return out


class ReasoningHFLM(HFLM):
    """`hf`, with generation through `thinking.generate` and the prompt template fixed by the suite."""

    def __init__(self, think: thinking.Think, chat_template: str | None = None, **kwargs):
        super().__init__(**kwargs)
        if chat_template is not None:  # the same template for every model of the table
            self.tokenizer.chat_template = chat_template
        self.think = think
        self.recorder = Recorder()

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        results: list[thinking.Generation | None] = [None] * len(requests)
        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        for indices in groups(requests).values():
            sampling, until, max_new, seed = settings(requests[indices[0]].args[1], self.max_gen_toks, eos)
            if seed is not None:  # seeded per settings group: a task's samples do not depend on the others
                torch.manual_seed(seed)
            # longest prompts first, as lm-eval does: less padding, and an out-of-memory shows at once
            order = sorted(indices, key=lambda i: -len(self.tok_encode(requests[i].args[0])))
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                contexts = [requests[i].args[0] + self.think.prefill for i in batch]
                ids, mask = self.tok_batch_encode(contexts, left_truncate_len=self.max_length - max_new,
                                                  truncation=self.truncation)
                gens = thinking.generate(self.model, self.tokenizer, ids.to(self.device), mask.to(self.device),
                                         max_new_tokens=max_new, sampling=sampling, think=self.think, stops=until)
                for i, gen in zip(batch, gens):
                    results[i] = gen
        for req, gen in zip(requests, results):
            self.recorder.add(req, gen)
        return [gen.answer for gen in results]
