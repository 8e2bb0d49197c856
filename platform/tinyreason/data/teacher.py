"""Teacher generation on Ray Data: a pool of model actors answers prompt rows.

`generate(prompts, spec, model_dir)` maps batches of prompt rows (a question as chat
messages, and its gold answer) through `TeacherActor`s, one per GPU or per CPU, each
holding the model once; every prompt is answered `num_samples` times at the source's
temperature. Each sample becomes a chat row (the prompt's messages plus the teacher's
answer) judged by the source's filters: a dropped one carries its reason in `FILTERED`,
and the blend builder counts it as rejected under that reason, so a teacher's blend is an
ordinary blend (data/blend.py) whose card says what the teacher made and what was kept.
With `pairs`, a prompt's kept samples are graded instead, and each right one is paired with
a wrong one as a preference row (`pair_up`); the samples left without a partner are dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass

import ray
import ray.data

from tinyreason.answers import grade, split_thinking
from tinyreason.config.sections import TeacherFilters, TeacherSource
from tinyreason.data.tokenize import batch_of, rows_of
from tinyreason.storage import resolve

ACTOR_START_S = 600  # how long the pool may take to start: a hub teacher downloads, a GPU one loads
FILTERED = "_filtered"  # why a generated sample was dropped, '' when kept (read by blend.clean_row)
BOOKKEEPING = [FILTERED, "_gold", "_answer", "_tokens", "_samples", "_actor", "_seconds"]
COLUMNS = ["messages", *BOOKKEEPING]
PAIR_COLUMNS = ["prompt", "chosen", "rejected", *BOOKKEEPING]
# per-row bookkeeping the driver sums, then drops: a pair row stands for its two samples
STATS = ["_tokens", "_samples", "_actor", "_seconds"]
# Stable codes: the blend card prints these sentences next to their counts
FILTER_REASONS = {
    "teacher_wrong": "The teacher's final answer does not match the prompt's gold answer (filters.correct).",
    "teacher_malformed": "The teacher's answer has no single well-formed <think> block before its final answer "
                         "(filters.well_formed).",
    "teacher_too_long": "The teacher's answer is longer than filters.max_tokens tokens.",
    "teacher_unfinished": "The teacher reached max_new_tokens before ending its turn (filters.finished).",
    "teacher_unpaired": "No sample of the other kind was left to pair this one with (pairs): its prompt's kept "
                        "samples were all right, all wrong, or more of one kind than the other.",
}
BLOCKS_PER_ACTOR = 4  # the prompts are cut into this many blocks per actor: work for each, and even finishes


@dataclass(frozen=True)
class Generation:
    """What one actor needs: the model, the sampling settings, where to run."""

    model_dir: str
    num_samples: int
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int
    pairs: bool = False
    trust_remote_code: bool = False
    use_gpu: bool = False


def judge(completion: str, gold: str | None, n_tokens: int, finished: bool, filters: TeacherFilters) -> str:
    """Pure: the reason a sample is dropped, or '' when every filter keeps it."""
    if filters.finished and not finished:
        return "teacher_unfinished"
    if filters.max_tokens is not None and n_tokens > filters.max_tokens:
        return "teacher_too_long"
    if filters.well_formed and not split_thinking(completion).well_formed:
        return "teacher_malformed"
    if filters.correct and not grade(completion, gold or "").correct:
        return "teacher_wrong"
    return ""


def batch_seed(seed: int, prompts: list[str]) -> int:
    """Sampling seed of one batch, from its prompts: the same prompts sample the same answers."""
    h = hashlib.sha256(f"{seed}\0{prompts[0] if prompts else ''}\0{len(prompts)}".encode()).hexdigest()
    return int(h[:8], 16)


def pair_up(right: list[int], wrong: list[int]) -> tuple[list[tuple[int, int]], list[int]]:
    """Pure: (pairs of a right and a wrong sample's index, the samples left over), in sampling
    order. Each sample is used once, so no pair repeats a completion and every pair is a fresh
    contrast on the same prompt."""
    n = min(len(right), len(wrong))
    return list(zip(right[:n], wrong[:n])), right[n:] + wrong[n:]


class TeacherActor:
    """A Ray Data actor: loads the teacher once, then answers batches of prompt rows."""

    def __init__(self, gen: Generation, filters: TeacherFilters):
        # actor-only imports: torch and transformers load in the actor process, not in the driver's Ray Data plan
        import torch
        from transformers import AutoTokenizer
        from tinyreason.model.presets import load_model

        self.gen, self.filters, self.torch = gen, filters, torch
        self.device = "cuda" if gen.use_gpu and torch.cuda.is_available() else "cpu"
        if self.device == "cpu":
            torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
        model_dir = resolve(gen.model_dir)  # on object storage: fetched into this node's mirror
        self.tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=gen.trust_remote_code)
        self.tok.padding_side = "left"  # decoder-only generation continues from the right edge
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = load_model(model_dir, gen.trust_remote_code).to(self.device).eval()
        self.eos = self.tok.convert_tokens_to_ids(self.tok.eos_token)
        self.pid = f"{os.uname().nodename}:{os.getpid()}"

    def __call__(self, batch: dict) -> dict:
        rows = rows_of(batch)
        texts = [self.tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True,
                                              **_template_kwargs(r)) for r in rows]
        start = time.perf_counter()
        outs = self._sample(texts)
        seconds = (time.perf_counter() - start) / max(len(outs), 1)  # the batch's generate time, per sample
        judged = []
        for i, row in enumerate(rows):
            gold = row.get("answer") or ""
            samples = []
            for text, n_tokens, finished in outs[i * self.gen.num_samples:(i + 1) * self.gen.num_samples]:
                g = grade(text, gold)
                samples.append({"messages": [*row["prompt"], {"role": "assistant", "content": text}],
                                FILTERED: judge(text, gold, n_tokens, finished, self.filters), "_gold": gold,
                                "_answer": g.answer or "", "_tokens": n_tokens, "_samples": 1, "_actor": self.pid,
                                "_seconds": seconds, "_right": g.correct})
            judged += self._pairs(row["prompt"], samples) if self.gen.pairs else samples
        return batch_of(judged, PAIR_COLUMNS if self.gen.pairs else COLUMNS)

    @staticmethod
    def _pairs(prompt: list[dict], samples: list[dict]) -> list[dict]:
        """One prompt's samples as preference rows (a right one chosen over a wrong one) and, for
        the samples that found no partner or that a filter dropped, rows that say why."""
        kept = [k for k, s in enumerate(samples) if not s[FILTERED]]
        pairs, alone = pair_up([k for k in kept if samples[k]["_right"]], [k for k in kept if not samples[k]["_right"]])
        out = []
        for c, r in pairs:
            chosen, rejected = samples[c], samples[r]
            out.append({"prompt": prompt, "chosen": chosen["messages"][-1:], "rejected": rejected["messages"][-1:],
                        FILTERED: "", "_gold": chosen["_gold"], "_answer": rejected["_answer"],
                        "_tokens": chosen["_tokens"] + rejected["_tokens"], "_samples": 2,
                        "_actor": chosen["_actor"], "_seconds": chosen["_seconds"] + rejected["_seconds"]})
        for k in alone + [k for k, s in enumerate(samples) if s[FILTERED]]:
            s = samples[k]
            out.append({**{c: s[c] for c in BOOKKEEPING}, "prompt": prompt, "chosen": s["messages"][-1:],
                        "rejected": None, FILTERED: s[FILTERED] or "teacher_unpaired"})
        return out

    def _sample(self, texts: list[str]) -> list[tuple[str, int, bool]]:
        """(completion text, its tokens, whether it ended its turn), num_samples per prompt, in order."""
        torch, gen = self.torch, self.gen
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        torch.manual_seed(batch_seed(gen.seed, texts))
        sampling = dict(do_sample=True, temperature=gen.temperature, top_p=gen.top_p, top_k=0) \
            if gen.temperature > 0 else dict(do_sample=False)
        with torch.no_grad():
            out = self.model.generate(**enc, max_new_tokens=gen.max_new_tokens, num_return_sequences=gen.num_samples,
                                      eos_token_id=self.eos, pad_token_id=self.tok.pad_token_id, **sampling)
        results = []
        for row in out[:, enc["input_ids"].shape[1]:].tolist():
            finished = self.eos in row
            ids = row[:row.index(self.eos)] if finished else [t for t in row if t != self.tok.pad_token_id]
            text = self.tok.decode(ids, skip_special_tokens=False).replace(self.tok.pad_token, "")
            results.append((text.strip(), len(ids), finished))
        return results


def _template_kwargs(row: dict) -> dict:
    """A prompt row's chat_template_kwargs, stored as JSON text (data/blend.py)."""
    raw = row.get("chat_template_kwargs") or "{}"
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def actor_count(spec: TeacherSource) -> tuple[int, bool]:
    """(actors, on GPUs): the source's `actors`, else one per GPU of the cluster, else one per CPU."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if spec.actors is not None:
        return spec.actors, gpus > 0
    return (gpus, True) if gpus else (max(1, int(resources.get("CPU", 1))), False)


def generate(prompt_table, spec: TeacherSource, model_dir: str, trust_remote_code: bool = False):
    """The teacher's judged samples of every prompt row (a pyarrow table of prompt-schema rows),
    as a lazy Ray Dataset: `map_batches` over a pool of `TeacherActor`s."""
    actors, on_gpu = actor_count(spec)
    # Start every actor of the pool before handing out blocks: each loads the teacher (seconds), and
    # by default Ray Data dispatches to the first one ready, which then takes a small prompt set whole
    ctx = ray.data.DataContext.get_current()
    ctx.wait_for_min_actors_s = max(ctx.wait_for_min_actors_s, ACTOR_START_S)
    n = prompt_table.num_rows
    # From the driver's table in blocks, not a read: no read task competes with the actors for CPUs
    step = max(1, -(-n // (actors * BLOCKS_PER_ACTOR)))
    ds = ray.data.from_arrow([prompt_table.slice(i, step) for i in range(0, n, step)])
    gen = Generation(model_dir, spec.num_samples, spec.temperature, spec.top_p, spec.max_new_tokens, spec.seed,
                     spec.pairs, trust_remote_code, on_gpu)
    return ds.map_batches(TeacherActor, fn_constructor_kwargs={"gen": gen, "filters": spec.filters},
                          batch_size=spec.batch_size, compute=ray.data.ActorPoolStrategy(size=actors),
                          num_gpus=1 if on_gpu else 0, num_cpus=1, batch_format="default")
