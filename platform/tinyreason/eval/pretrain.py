"""Pre-training metrics: validation perplexity on a blend's held-out split, and samples.

Held-out documents are scored the way pre-training sees them (train/pretrain.py):
the text without BOS, then the document separator, with attention and positions
restarting at every document; a document longer than `max_length` is cut into
independent chunks, as a block boundary cuts it in training. The first token of each
chunk has no context and is not scored (TRL's padding-free collator masks it too).
Perplexity = exp(token-weighted mean NLL over every scored token).

Samples are continuations of a few fixed prompts: greedy, and one sampled with a
fixed seed, so two runs of the same model print the same text.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import pyarrow.parquet as pq
import torch
from transformers import AutoTokenizer

from tinyreason.model.presets import load_model

# Generic openings that fit both corpora the configs pre-train on: the synthetic
# world's stories and word problems, and TinyStories.
PROMPTS = (
    "Once upon a time,",
    "One day, Tom went to the",
    "Question: Anna has 5 apples. She eats 2. How many apples does Anna have now?\nAnswer:",
)
SAMPLE_SEED = 20261122
SAMPLE_TEMPERATURE = 0.8  # below 1: fewer picks from a small model's long tail of junk tokens, still varied
MAX_NEW_TOKENS = 48
# Token budget of the held-out score: 2^18 tokens is ~1,300 TinyStories documents, plenty
# to compare checkpoints; TinyStories' 1% split is ~4.7M tokens. Scoring 2^18 takes ~3 min
# for the 20M preset on one CPU core (measured 1.3k tokens/s), seconds on a GPU.
MAX_TOKENS = 1 << 18


def settings() -> dict:
    """What the numbers depend on besides the model and the data: part of the eval cache key."""
    return {"prompts": list(PROMPTS), "seed": SAMPLE_SEED, "seeding": "seed+crc32(prompt)",
            "temperature": SAMPLE_TEMPERATURE,
            "max_new_tokens": MAX_NEW_TOKENS, "max_tokens": MAX_TOKENS}


def separator_id(tok) -> int:
    """The token that ends every pre-training document (as tokenize_text_batch appends it);
    a hub tokenizer without a pad token (a base model not yet through a stage) ends with EOS."""
    return tok.convert_tokens_to_ids(tok.pad_token if tok.pad_token is not None else tok.eos_token)


def tokenize_documents(tok, texts: list[str], max_tokens: int | None = None) -> list[list[int]]:
    """Each document as ids + separator, without BOS (as in training). Stops after the
    document that crosses `max_tokens`, so the budget counts whole documents."""
    sep, docs, total = separator_id(tok), [], 0
    for text in texts:
        docs.append(tok(text, add_special_tokens=False)["input_ids"] + [sep])
        total += len(docs[-1])
        if max_tokens is not None and total >= max_tokens:
            break
    return docs


def chunk_documents(docs: list[list[int]], max_length: int) -> list[list[int]]:
    """Documents cut into independent chunks of at most max_length tokens; a one-token
    chunk scores nothing and is dropped."""
    return [d[i:i + max_length] for d in docs for i in range(0, len(d), max_length) if len(d) - i > 1]


def chunk_nll(model, chunks: list[list[int]], pad_id: int, batch_size: int = 16) -> tuple[float, int]:
    """(sum of next-token NLL in nats, number of scored tokens) over independent chunks."""
    device = next(model.parameters()).device
    order = sorted(range(len(chunks)), key=lambda i: len(chunks[i]))  # similar lengths: little padding
    total, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        batch = [chunks[i] for i in order[start:start + batch_size]]
        width = max(len(c) for c in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, c in enumerate(batch):
            ids[row, :len(c)] = torch.tensor(c)
            mask[row, :len(c)] = 1
        ids, mask = ids.to(device), mask.to(device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)  # right padding: pads are never context
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="sum")
        total += nll.item()
        count += int((targets != -100).sum())
    return total, count


def perplexity(model, tok, texts: list[str], max_length: int, batch_size: int = 16,
               max_tokens: int | None = MAX_TOKENS) -> dict:
    """Token-weighted mean NLL and its exp over held-out documents."""
    limit = getattr(model.config, "max_position_embeddings", None) or max_length
    max_length = min(max_length, limit)
    docs = tokenize_documents(tok, texts, max_tokens)
    chunks = chunk_documents(docs, max_length)
    if not chunks:
        raise ValueError(f"no held-out document yields a scored token ({len(texts)} documents given)")
    total, count = chunk_nll(model, chunks, tok.pad_token_id if tok.pad_token_id is not None else 0, batch_size)
    nll = total / count
    return {"nll": nll, "perplexity": math.exp(nll), "tokens": count, "chunks": len(chunks), "documents": len(docs),
            "max_length": max_length}


def generate_samples(model, tok, prompts=PROMPTS, max_new_tokens: int = MAX_NEW_TOKENS,
                     seed: int = SAMPLE_SEED, temperature: float = SAMPLE_TEMPERATURE) -> list[dict]:
    """One greedy and one sampled continuation per prompt. Each prompt seeds its own draw
    (seed + a hash of the prompt): its sample does not depend on the prompts before it, and
    two prompts do not share one random stream (which makes a barely trained model's
    near-uniform samples look alike)."""
    device = next(model.parameters()).device
    stop = sorted({separator_id(tok), tok.convert_tokens_to_ids(tok.eos_token)})
    out = []
    for prompt in prompts:
        enc = tok(prompt, return_tensors="pt", add_special_tokens=False).to(device)
        row = {"prompt": prompt}
        for name, kwargs in (("greedy", {"do_sample": False}),
                             ("sampled", {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0})):
            torch.manual_seed(seed + zlib.crc32(prompt.encode()))
            with torch.no_grad():
                ids = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=stop,
                                     pad_token_id=tok.pad_token_id, **kwargs)
            row[name] = tok.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        out.append(row)
    return out


def read_heldout_texts(heldout_dir: str | Path) -> list[str]:
    """The `text` column of a blend's heldout/ parquet shards, in their written (shuffled) order."""
    files = sorted(Path(heldout_dir).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no parquet shards in the held-out split {heldout_dir}")
    return [t for f in files for t in pq.read_table(f, columns=["text"]).column("text").to_pylist() if t]


def evaluate_pretrain(model_dir: str, heldout_dir: str | None, max_length: int, batch_size: int = 16,
                      trust_remote_code: bool = False, max_tokens: int | None = MAX_TOKENS,
                      revision: str | None = None, seed: int = 0) -> dict:
    """Perplexity on the held-out split (when there is one) and samples from the fixed prompts,
    drawn from SAMPLE_SEED plus the experiment's `seed` (seed 0 draws what it always drew)."""
    tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code, revision=revision)
    model = load_model(model_dir, trust_remote_code, revision=revision).eval()
    if torch.cuda.is_available():
        model = model.cuda()
    result: dict = {"perplexity": None, "heldout_dir": heldout_dir}
    if heldout_dir:
        result.update(perplexity(model, tok, read_heldout_texts(heldout_dir), max_length, batch_size, max_tokens))
    result["samples"] = generate_samples(model, tok, seed=SAMPLE_SEED + seed)
    return result
