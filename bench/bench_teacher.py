"""Teacher generation: the platform's pool of model actors on Ray Data against one plain
`model.generate` loop over the same prompts, on the same cores.

    .venv/bin/python bench/bench_teacher.py            # writes bench/results/teacher_generation.json
    .venv/bin/python bench/bench_teacher.py --quick    # 1 round, 64 prompts

Both sides answer the same synthetic prompt rows (`synthetic.prompt_rows`) with the same
model (`--preset`, from scratch: it rarely stops early, so both sides generate close to
max_new_tokens per sample), `--samples` samples per prompt at temperature 0.7, batches
of `--batch` prompts, interleaved per round:

  ray_actors   data/teacher.generate: `map_batches` over an ActorPoolStrategy pool of one
               1-CPU actor per CPU (`--cpus`, 2 here), each loading the model once; wall
               clock from submitting the pipeline to the last sample, actor start-up
               and model loads included; `generating` counts the time inside generate()
  plain_loop   one process, torch on the same number of threads, model loaded once, one
               loop of model.generate over the same batches (what a script would do)

tokens/s counts generated tokens (up to and excluding the end-of-turn token).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402
from benchlib import log, med  # noqa: E402

VARIANTS = ("ray_actors", "plain_loop")
MAX_NEW, TEMPERATURE = 64, 0.7


def prompt_table(n: int):
    import pyarrow as pa

    from tinyreason.data import synthetic

    rows = synthetic.prompt_rows(n, 0)
    return pa.Table.from_pylist([{"prompt": r["prompt"], "answer": r["answer"], "chat_template_kwargs": "{}"}
                                 for r in rows])


def spec(args):
    from tinyreason.config.sections import TeacherSource

    return TeacherSource(model="bench", prompts=[{"synthetic": "prompts"}], num_samples=args.samples,
                         temperature=TEMPERATURE, max_new_tokens=MAX_NEW, batch_size=args.batch, actors=args.cpus,
                         filters={"finished": False})


def ray_actors(args, model_dir: str, table) -> dict:
    from tinyreason.data import teacher

    t0 = time.perf_counter()
    ds = teacher.generate(table, spec(args), model_dir).materialize()
    wall = time.perf_counter() - t0
    stats = ds.select_columns(teacher.STATS).to_pandas()
    tokens, busy = int(stats["_tokens"].sum()), float(stats["_seconds"].sum())
    actors = stats["_actor"].nunique()
    return {"tokens": tokens, "samples": len(stats), "wall_s": round(wall, 2), "tokens_per_s": round(tokens / wall, 1),
            "generating_s": round(busy / actors, 2), "tokens_per_s_generating": round(tokens / (busy / actors), 1),
            "actors": int(actors)}


def plain_loop(args, model_dir: str, table) -> dict:
    """One process: what a script does with the model and the same prompt batches."""
    import torch
    from transformers import AutoTokenizer

    from tinyreason.data.teacher import batch_seed
    from tinyreason.model.presets import load_model

    torch.set_num_threads(args.cpus)
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    model = load_model(model_dir).eval()
    eos = tok.convert_tokens_to_ids(tok.eos_token)
    loaded = time.perf_counter()
    prompts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
               for p in table.column("prompt").to_pylist()]
    tokens = samples = 0
    for i in range(0, len(prompts), args.batch):
        texts = prompts[i:i + args.batch]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(batch_seed(0, texts))
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=MAX_NEW, num_return_sequences=args.samples, do_sample=True,
                                 temperature=TEMPERATURE, top_p=1.0, top_k=0, eos_token_id=eos,
                                 pad_token_id=tok.pad_token_id)
        for row in out[:, enc["input_ids"].shape[1]:].tolist():
            tokens += row.index(eos) if eos in row else sum(t != tok.pad_token_id for t in row)
            samples += 1
    end = time.perf_counter()
    return {"tokens": tokens, "samples": samples, "wall_s": round(end - t0, 2),
            "tokens_per_s": round(tokens / (end - t0), 1), "generating_s": round(end - loaded, 2),
            "tokens_per_s_generating": round(tokens / (end - loaded), 1), "torch_threads": torch.get_num_threads()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=256)
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--cpus", type=int, default=2, help="actors on one side, torch threads on the other")
    benchlib.add_common_args(p, ",".join(VARIANTS), "teacher_generation.json", quick="1 round, 64 prompts",
                             known=VARIANTS)
    args = p.parse_args()
    if args.quick:
        args.prompts, args.rounds = 64, 1
    model_dir, _ = benchlib.prepare(args)
    table = prompt_table(args.prompts)
    every = {"ray_actors": ray_actors, "plain_loop": plain_loop}
    started = time.perf_counter()
    runs = benchlib.run_rounds({k: lambda rnd, k=k: every[k](args, model_dir, table) for k in args.variants.split(",")},
                               args.rounds, describe=lambda r: f"{r['tokens']} tokens, generating "
                                                               f"{r['tokens_per_s_generating']} tokens/s")
    pairs = [("tokens_per_s_ray_actors_vs_plain_loop", "ray_actors", "plain_loop")]
    ratios, raw = benchlib.paired_ratios(runs, pairs)
    gen, gen_raw = benchlib.per_round(runs, "ray_actors", "plain_loop", "tokens_per_s_generating")
    ratios["tokens_per_s_generating_ray_actors_vs_plain_loop"] = gen
    raw["tokens_per_s_generating_ray_actors_vs_plain_loop"] = gen_raw
    tps = {k: med(r["tokens_per_s"] for r in v) for k, v in runs.items()}
    tpg = {k: med(r["tokens_per_s_generating"] for r in v) for k, v in runs.items()}
    result = {
        "name": "teacher_generation",
        "command": f"python bench/bench_teacher.py --prompts {args.prompts} --samples {args.samples} --batch "
                   f"{args.batch} --cpus {args.cpus} --rounds {args.rounds} --preset {args.preset}",
        "machine": benchlib.MACHINE, "date": benchlib.DATE,
        "settings": {"preset": args.preset, "parameters": benchlib.parameters(model_dir), "prompts": args.prompts,
                     "num_samples": args.samples, "batch_prompts": args.batch, "max_new_tokens": MAX_NEW,
                     "temperature": TEMPERATURE, "cpus": args.cpus, "niceness": args.niceness,
                     "rounds": args.rounds, "bench_seconds": round(time.perf_counter() - started, 1)},
        "metrics": {"tokens_per_s": tps.get("ray_actors"), "tokens_per_s_generating": tpg.get("ray_actors")},
        "baseline": {"name": f"one model.generate loop, torch on {args.cpus} threads, same prompts and batches",
                     "metrics": {"tokens_per_s": tps.get("plain_loop"),
                                 "tokens_per_s_generating": tpg.get("plain_loop")}},
        "ratios": ratios, "ratios_per_round": raw,
        "targets": {"tokens_per_s_generating_ray_actors_vs_plain_loop": ">= 1.0 (same cores)"},
        "runs": runs,
    }
    benchlib.write_result(result, Path(args.out))
    benchlib.print_table([(k, tps[k], tpg[k], med(r["wall_s"] for r in runs[k]), len(runs[k])) for k in runs],
                         ("variant", "tokens/s (wall)", "tokens/s generating", "wall s", "runs"))
    print()
    benchlib.print_table(list(ratios.items()), ("ratio", "value"))


if __name__ == "__main__":
    main()
