"""lm-eval's vLLM engine with the same reasoning handling as eval/lm.py, for generation-heavy
suites on GPUs (`evaluation.benchmarks.backend: vllm` or `auto`).

vLLM is optional: this module imports it at load time and the harness imports this module only
when the backend is vllm (it says so, with the fix, when vllm is missing). Generation is in two
phases, the usual way of forcing a budget with an engine that takes no per-step hook:

1. the thinking: up to `budget` tokens, stopping at `</think>` (no budget: the whole limit);
2. for rows still inside the block, `</think>` is appended and the answer generated with the
   tokens left; a row that closed its block itself goes on to its answer the same way.

Special tokens are kept in the decoded text (skip_special_tokens=False) so the thinking can be
split off, and stop sequences are applied to the answer part afterwards, as lm-eval's own vLLM
path does. Each request gets its own seed (seed, position in its group), so repeats differ and a
re-run repeats them. Not run in CI (no GPU there); tests/unit check the missing-vllm error.
"""

from __future__ import annotations

from lm_eval.models.vllm_causallms import VLLM
from vllm import SamplingParams, TokensPrompt

from tinyreason.answers import split_thinking
from tinyreason.eval import thinking
from tinyreason.eval.lm import Recorder, groups, settings
from tinyreason.model.chat import THINK_CLOSE


class ReasoningVLLM(VLLM):
    def __init__(self, think: thinking.Think, chat_template: str | None = None, **kwargs):
        super().__init__(**kwargs)
        if chat_template is not None:
            self.tokenizer.chat_template = chat_template
        self.think = think
        self.recorder = Recorder()

    def _params(self, sampling: dict, seed: int, max_tokens: int, stop_ids: list[int]) -> SamplingParams:
        sampled = sampling.get("do_sample", False)
        return SamplingParams(temperature=sampling.get("temperature", 1.0) if sampled else 0.0,
                              top_p=sampling.get("top_p", 1.0) if sampled else 1.0,
                              top_k=sampling.get("top_k") or -1 if sampled else -1, seed=seed,
                              max_tokens=max(1, max_tokens), stop_token_ids=stop_ids,
                              skip_special_tokens=False, spaces_between_special_tokens=False)

    def _run(self, prompts: list[list[int]], params: list[SamplingParams]) -> list[list[int]]:
        outs = self.model.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], sampling_params=params,
                                   use_tqdm=False)
        return [list(o.outputs[0].token_ids) for o in outs]

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        results: list[thinking.Generation | None] = [None] * len(requests)
        eos_text = self.tokenizer.decode([self.eot_token_id], skip_special_tokens=False)
        close = thinking.tag_ids(self.tokenizer, THINK_CLOSE)
        budget = 0 if self.think.mode == "off" else self.think.budget
        for indices in groups(requests).values():
            sampling, until, max_new, seed = settings(requests[indices[0]].args[1], self.max_gen_toks, eos_text)
            seeds = [(seed or 0) * 1_000_003 + j for j in range(len(indices))]
            prompts = self.tok_encode([requests[i].args[0] + self.think.prefill for i in indices])
            first_limit = budget if budget else max_new
            stop_ids = [self.eot_token_id] + (close[-1:] if budget else [])
            first = self._run(prompts, [self._params(sampling, s, first_limit, stop_ids) for s in seeds])
            second_prompts, second_at, forced = [], [], {}
            for j, ids in enumerate(first):
                text = self.think.prefill + self.tokenizer.decode(ids, skip_special_tokens=False)
                split = split_thinking(text)
                ended = bool(ids) and ids[-1] == self.eot_token_id
                if budget and not ended and len(ids) < max_new:
                    inside = split.opened and not split.closed
                    if inside:
                        ids = ids + close  # the budget is spent: close the block, then answer
                        forced[j] = True
                    second_prompts.append(prompts[j] + ids)
                    second_at.append(j)
                first[j] = ids
            if second_prompts:
                rest = self._run(second_prompts, [self._params(sampling, seeds[j] + 1, max_new - len(first[j]),
                                                               [self.eot_token_id]) for j in second_at])
                for j, ids in zip(second_at, rest):
                    first[j] = first[j] + ids
            for j, i in enumerate(indices):
                ids = first[j]
                text = self.think.prefill + self.tokenizer.decode(ids, skip_special_tokens=False)
                split = split_thinking(text)
                think_tokens = len(self.tokenizer.encode(split.thinking or "", add_special_tokens=False))
                results[i] = thinking.from_text(self.tokenizer, text, until, think_tokens=think_tokens,
                                                forced_close=forced.get(j, False),
                                                hit_limit=len(ids) >= max_new and ids[-1:] != [self.eot_token_id])
        for req, gen in zip(requests, results):
            self.recorder.add(req, gen)
        return [gen.answer for gen in results]
