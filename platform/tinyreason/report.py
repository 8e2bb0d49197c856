"""The curriculum report: per-stage summary, loss curves, benchmarks across stages.

Written as report.md and a self-contained report.html (plots inlined) plus
results.json in the run directory, and printed at the end of jobs/curriculum.py.
The benchmark table follows the reference report's: one row per benchmark, one
column per stage plus the base model, deltas against the base; a pretrain stage adds
its validation perplexity as a row (base vs pretrained shows what pre-training did)
and its fixed-prompt samples as a section.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from tinyreason.curriculum import CurriculumResult
from tinyreason.eval.harness import results_table
from tinyreason.eval.scores import PERPLEXITY, objective_value, pretrain_scores, primary_scores, table_scores


def stage_rows(result: CurriculumResult) -> list[dict]:
    rows = []
    for o in result.stages:
        s = o.manifest.get("summary", {})
        scores = primary_scores(o.evaluation)
        rows.append({
            "stage": o.stage.name, "kind": o.stage.kind, "status": "cached" if o.cached else "trained",
            "steps": s.get("steps"), "loss_first": s.get("loss_first"), "loss_last": s.get("loss_last"),
            "tokens_per_s": s.get("tokens_per_s"), "train_seconds": o.manifest.get("train_seconds"),
            "heldout_accuracy": scores.get("heldout/accuracy"),
            "well_formed_think": scores.get("heldout/well_formed"),
            "new_templates_accuracy": scores.get("heldout_new/accuracy"),
            "reward_margin": s.get("rewards/margins"),
            "perplexity": pretrain_scores(o.evaluation).get(PERPLEXITY),
            "why": o.reason, "best_checkpoint": (o.manifest.get("checkpoints") or {}).get("best"),
            "model_dir": str(o.dir / "model"),
        })
    return rows


def _fmt(v, spec: str = ".3f") -> str:
    if v is None:
        return "-"
    return format(v, spec) if isinstance(v, float) else str(v)


def summary_table(rows: list[dict]) -> str:
    head = ("| stage | kind | status | steps | loss first -> last | tokens/s | held-out acc | new templates | "
            "well-formed | margin | seconds |")
    lines = [head, "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(
            f"| {r['stage']} | {r['kind']} | {r['status']} | {_fmt(r['steps'])} | "
            f"{_fmt(r['loss_first'])} -> {_fmt(r['loss_last'])} | {_fmt(r['tokens_per_s'], '.0f')} | "
            f"{_fmt(r['heldout_accuracy'], '.1%')} | {_fmt(r['new_templates_accuracy'], '.1%')} | "
            f"{_fmt(r['well_formed_think'], '.1%')} | {_fmt(r['reward_margin'])} | {_fmt(r['train_seconds'], '.0f')} |"
        )
    return "\n".join(lines)


def benchmark_columns(result: CurriculumResult, scores=primary_scores) -> dict[str, dict[str, float]]:
    """{model: {benchmark: value}}, base first; `table_scores` adds the perplexity rows."""
    cols = {"base": scores(result.base_eval)} if result.base_eval else {}
    for o in result.stages:
        cols[o.stage.name] = scores(o.evaluation)
    return {k: v for k, v in cols.items() if v}


def pretrain_results(result: CurriculumResult) -> dict[str, dict]:
    """Each model's pre-training evaluation (perplexity, token counts, samples), by name."""
    evals = {"base": result.base_eval, **{o.stage.name: o.evaluation for o in result.stages}}
    return {name: ev["pretrain"] for name, ev in evals.items() if ev and ev.get("pretrain")}


def _cell(text: str) -> str:
    # one table cell: newlines shown as the escape, and no "|", which would split the cell
    return text.replace("\n", "\\n").replace("|", "¦").strip() or "(empty)"


def samples_section(pretrain: dict[str, dict]) -> list[str]:
    from tinyreason.eval.pretrain import SAMPLE_SEED, SAMPLE_TEMPERATURE

    if not any(p.get("samples") for p in pretrain.values()):
        return []
    md = ["## Pre-training samples", "",
          f"Continuations of fixed prompts: greedy, and one sampled at temperature {SAMPLE_TEMPERATURE} "
          f"seeded per prompt from seed {SAMPLE_SEED}.", ""]
    for name, p in pretrain.items():
        ppl = (f"held-out perplexity {p['perplexity']:.3f} over {p['tokens']:,} tokens of {p['documents']:,} "
               "documents" if p.get("perplexity") is not None else "no held-out split to score")
        md += [f"### {name}", "", f"{ppl}.", "", "| prompt | greedy | sampled |", "| --- | --- | --- |"]
        md += [f"| {_cell(s['prompt'])} | {_cell(s['greedy'])} | {_cell(s['sampled'])} |" for s in p["samples"]]
        md.append("")
    return md


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_losses(result: CurriculumResult, path: Path) -> Path | None:
    plt = _plt()
    stages = [o for o in result.stages if any("loss" in m for m in o.metrics)]
    if not stages:
        return None
    fig, axes = plt.subplots(1, len(stages), figsize=(4 * len(stages), 3.2), squeeze=False)
    for ax, o in zip(axes[0], stages):
        pts = [(m["step"], m["loss"]) for m in o.metrics if "loss" in m]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", lw=1)
        ax.set(title=f"{o.stage.name} ({o.stage.kind})", xlabel="optimizer step", ylabel="loss")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_benchmarks(columns: dict[str, dict[str, float]], path: Path) -> Path | None:
    """Grouped bars: each benchmark across base and stages, the way the reference report reads."""
    plt = _plt()
    benches = list(dict.fromkeys(b for c in columns.values() for b in c))
    if not benches:
        return None
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(benches) * len(columns) / 3), 3.4))
    width = 0.8 / len(columns)
    for i, (name, scores) in enumerate(columns.items()):
        xs = [j + i * width for j in range(len(benches))]
        ax.bar(xs, [scores.get(b, 0) for b in benches], width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(benches))], benches, rotation=15, fontsize=8)
    ax.set_ylabel("score")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(result: CurriculumResult) -> Path:
    run_dir = result.run_dir
    rows = stage_rows(result)
    columns = benchmark_columns(result)
    table = benchmark_columns(result, table_scores)
    pretrain = pretrain_results(result)
    weights = result.config.evaluation.objective.weights
    objectives = {name: _objective({"base": result.base_eval, **{o.stage.name: o.evaluation
                                                                   for o in result.stages}}[name], weights)
                  for name in columns}
    plots = [p for p in (plot_losses(result, run_dir / "loss_curves.png"),
                         plot_benchmarks(columns, run_dir / "benchmarks.png")) if p]
    results = {"base": {"model": result.base.path}, "stages": rows, "benchmarks": columns,
               "objective": {"name": result.config.evaluation.objective.name, "values": objectives},
               "pretrain": pretrain}
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    md = [f"# Curriculum report: {result.config.name}", "", f"Base model: `{result.base.path}`", "",
          "## Stages", "", summary_table(rows), ""]
    md += [f"- **{r['stage']}**: {r['why']}" for r in rows if r["why"]] + [""]
    if table:
        md += ["## Benchmarks", "", "Deltas in parentheses are against the base model."
               + (f" `{PERPLEXITY}` is on the pretrain blend's held-out split; lower is better."
                  if any(PERPLEXITY in c for c in table.values()) else ""), "",
               results_table(table, "base" if "base" in table else None)]
        if objectives:
            md += [f"Objective ({results['objective']['name']}): "
                   + ", ".join(f"{k} {_fmt(v)}" for k, v in objectives.items())]
        md.append("")
    md += samples_section(pretrain)
    md += [f"![{p.stem}]({p.name})" for p in plots] + ["", "## Outputs", ""]
    md += [f"- {r['stage']}: `{r['model_dir']}`"
           + (f"; best checkpoint (step {b['step']}, {b['value']:.4g}): `{b['path']}`"
              if (b := r["best_checkpoint"]) and b.get("value") is not None else "") for r in rows]
    path = run_dir / "report.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    (run_dir / "report.html").write_text(markdown_to_html(md, run_dir), encoding="utf-8")
    return path


def _objective(evaluation: dict | None, weights: dict) -> float | None:
    try:
        return objective_value(evaluation, weights) if evaluation else None
    except ValueError:
        return None  # a weight naming a benchmark this model did not run: shown as "-"


def print_summary(result: CurriculumResult, report: Path) -> None:
    print("\n" + summary_table(stage_rows(result)))
    columns = benchmark_columns(result, table_scores)
    if columns:
        print("\n" + results_table(columns, "base" if "base" in columns else None))
    print(f"report: {report}\nfinal model: {result.stages[-1].dir / 'model'}")


def markdown_to_html(md_lines: list[str], out: Path) -> str:
    """The report's markdown as one standalone page: tables, headings, text, and the PNG
    plots inlined as base64 so the file can be mailed or attached as it is."""
    body, in_table = [], False
    for line in "\n".join(md_lines).splitlines():
        is_row = line.startswith("|")
        if in_table and not is_row:
            body.append("</table>")
        if is_row and not in_table:
            body.append("<table>")
        in_table = is_row
        if is_row:
            if set(line.replace("|", "").strip()) <= set("-: "):
                continue  # the markdown separator row
            cells = "".join(f"<td>{html.escape(c.strip())}</td>" for c in line.strip().strip("|").split("|"))
            body.append(f"<tr>{cells}</tr>")
        elif line.startswith("!["):
            data = base64.b64encode((out / line[line.index("(") + 1:-1]).read_bytes()).decode()
            body.append(f'<img src="data:image/png;base64,{data}" style="max-width:48%">')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        body.append("</table>")
    style = "body{font-family:sans-serif;max-width:1100px;margin:auto} td{border:1px solid #ccc;padding:3px 6px}"
    return (f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>"
            + "\n".join(body) + "</body></html>")
