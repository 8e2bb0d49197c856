"""Tokenize + pack throughput: Ray Data (the platform's SFT path) vs datasets.map, and
packing efficiency: best-fit-decreasing packing vs padding to the longest row.

    .venv/bin/python bench/bench_tokenize.py                 # writes bench/results/tokenize_pack.json
    .venv/bin/python bench/bench_tokenize.py --rows 1000     # a quick look

Both sides run the same functions (tinyreason.data.tokenize: chat template with
assistant masks, then BFD packing into max_length sequences) on the same rows with
the same number of processes, and each is timed from Python rows to packed
sequences, best of `--repeats` alternating runs (the first, cold Ray run is
recorded separately: it starts Ray's worker processes). Rows are chat-like: a system
prompt and a reasoning turn, then a lognormal number of extra turns (42% none,
median 1, mean 1.3, up to 10) of varied length: 240 tokens on average, p95 ~680,
and the longest cut at max_length, the long-tailed shape of real chat data.
"""

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "platform"))

from tinyreason.data import synthetic  # noqa: E402
from tinyreason.data.tokenize import on_ray, pack_batch, tokenize_chat_batch  # noqa: E402

WORK = ROOT / "bench" / "work" / "tokenize"
PAD_BATCH = 8  # per_device_train_batch_size of the default configs: padding is per batch


def chat_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    base = synthetic.reasoning_rows(n, seed)
    stories = [r["text"] for r in synthetic.pretrain_rows(4 * n, seed)]
    rows = []
    for row in base:
        messages = list(row["messages"])
        for _ in range(min(int(rng.lognormvariate(0.2, 0.9)), 10)):
            messages.append({"role": "user", "content": rng.choice(stories)[:rng.randint(20, 200)]})
            reply = " ".join(rng.choice(stories) for _ in range(min(1 + int(rng.lognormvariate(-0.5, 0.8)), 6)))
            messages.append({"role": "assistant", "content": reply})
        rows.append({"messages": messages})
    return rows


def make_tokenizer(out: Path) -> str:
    from tinyreason.model.tokenizer import add_think_tokens, prepare_chat_tokenizer, train_bpe

    tok = prepare_chat_tokenizer(train_bpe((r["text"] for r in synthetic.pretrain_rows(4000, 1)), 2048, out))
    add_think_tokens(tok)
    tok.save_pretrained(str(out))
    return str(out)


def _hf_tokenize(batch, tok_dir, max_length):
    from tinyreason.model.tokenizer import cached_tokenizer

    return tokenize_chat_batch(batch, cached_tokenizer(tok_dir), max_length)


def run_datasets(rows, tok_dir, max_length, procs):
    import datasets

    started = time.perf_counter()
    ds = datasets.Dataset.from_list(rows)
    ds = ds.map(_hf_tokenize, batched=True, batch_size=256, num_proc=procs, remove_columns=ds.column_names,
                fn_kwargs={"tok_dir": tok_dir, "max_length": max_length})
    ds = ds.map(pack_batch, batched=True, batch_size=2048, num_proc=procs, remove_columns=ds.column_names,
                fn_kwargs={"max_length": max_length})
    seqs = ds["seq_lengths"]
    return time.perf_counter() - started, seqs


def run_ray(rows, tok_dir, stage):
    import ray.data

    from tinyreason.train import sft

    started = time.perf_counter()
    ds = on_ray(ray.data.from_items(rows), sft.tokenize_steps(tok_dir, stage)).materialize()
    seqs = [list(r["seq_lengths"]) for r in ds.select_columns(["seq_lengths"]).take_all()]
    return time.perf_counter() - started, seqs


def padded_share(row_lengths: list[int], batch: int) -> float:
    """Real tokens / computed positions when each batch is padded to its longest row."""
    computed = sum(max(row_lengths[i:i + batch]) * len(row_lengths[i:i + batch])
                   for i in range(0, len(row_lengths), batch))
    return sum(row_lengths) / computed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=3000)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "tokenize_pack.json"))
    args = p.parse_args()

    import ray

    from tinyreason.config.experiment import StageConfig

    tok_dir = make_tokenizer(WORK / "tok")
    rows = chat_rows(args.rows, 0)
    stage = StageConfig.model_validate({"name": "sft", "kind": "sft", "data": {
        "blend": {"sources": [{"synthetic": "chat"}]}, "max_length": args.max_length, "packing": True}})
    ray.init(address="local", num_cpus=args.procs, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
    ray.data.DataContext.get_current().enable_progress_bars = False
    times = {"ray": [], "hf": []}
    for _ in range(args.repeats):  # alternating, so load from other work on the machine hits both
        t, ray_seqs = run_ray(rows, tok_dir, stage)
        times["ray"].append(t)
        t, hf_seqs = run_datasets(rows, tok_dir, args.max_length, args.procs)
        times["hf"].append(t)
    ray.shutdown()
    report(args, rows, ray_seqs, hf_seqs, times)


def report(args, rows, ray_seqs, hf_seqs, times) -> None:
    examples = [n for s in ray_seqs for n in s]
    assert sorted(examples) == sorted(n for s in hf_seqs for n in s), "both sides must produce the same examples"
    # Padding baseline in a shuffled order (as a data loader sees rows), not BFD's sorted order.
    unpacked = random.Random(0).sample(examples, len(examples))
    ray_lengths, tokens = [sum(s) for s in ray_seqs], sum(examples)
    ray_s, hf_s = min(times["ray"]), min(times["hf"])
    packed = tokens / (len(ray_lengths) * args.max_length)
    padded = padded_share(unpacked, PAD_BATCH)
    result = {
        "name": "tokenize_pack",
        "command": f"python bench/bench_tokenize.py --rows {args.rows} --max-length {args.max_length} "
                   f"--procs {args.procs} --repeats {args.repeats}",
        "machine": f"{args.procs} cores, CPU (shared)",
        "date": time.strftime("%Y-%m-%d"),
        "metrics": {"tokens_per_s": round(tokens / ray_s), "seconds": round(ray_s, 2), "rows": len(rows),
                    "tokens": tokens, "sequences": len(ray_lengths), "real_token_share": round(packed, 4),
                    "all_runs_s": [round(t, 2) for t in times["ray"]]},
        "baseline": {"name": f"datasets.map num_proc={args.procs}; padding to the longest row per batch of {PAD_BATCH}",
                     "metrics": {"tokens_per_s": round(tokens / hf_s), "seconds": round(hf_s, 2),
                                 "real_token_share": round(padded, 4),
                                 "real_token_share_pad_to_longest_overall": round(tokens / (len(unpacked) * max(unpacked)), 4),
                                 "all_runs_s": [round(t, 2) for t in times["hf"]]}},
        # The first Ray run starts worker processes that import transformers (~10 s on a
        # loaded 2-core box); a curriculum pays that once per cluster, not per stage.
        "ratios": {"tokens_per_s_vs_datasets_map": round(hf_s / ray_s, 3),
                   "cold_first_run_tokens_per_s_vs_datasets_map": round(times["hf"][0] / times["ray"][0], 3),
                   "real_token_share_vs_padding": round(packed / padded, 3)},
        "targets": {"tokens_per_s_vs_datasets_map": 1.0, "real_token_share": 0.95},
        "rows_tokens": {"mean": round(sum(unpacked) / len(unpacked)), "max": max(unpacked),
                        "p50": sorted(unpacked)[len(unpacked) // 2], "p95": sorted(unpacked)[int(len(unpacked) * 0.95)]},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
