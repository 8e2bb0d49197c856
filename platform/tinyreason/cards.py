"""Model cards in the Hugging Face shape, for every exported stage (`model/README.md`).

The YAML header is written by huggingface_hub's `ModelCardData` (base_model, datasets,
license, language, tags, and a model-index of the scores), so `push_to_hub` of a stage's
model dir publishes a card the Hub reads. The body says what the stage did, its settings
(the full stage config as YAML), its blend's composition, and its scores with their
standard errors. A stage gets its card when it is committed, and the card is written again
with the scores once the stage is evaluated (the curriculum and a sweep's trials do that).
"""

from __future__ import annotations

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from tinyreason.config.experiment import StageConfig
from tinyreason.context import RunContext
from tinyreason.data.blend import Blend
from tinyreason.data.card import token_lengths_section
from tinyreason.eval.scores import table_with_errors
from tinyreason.model import templates
from tinyreason.model.presets import HUB_PRESETS
from tinyreason.outputs import StageOutput
from tinyreason.render import md_table
from tinyreason.train import registry

CARD = "model/README.md"
MANIFEST_COPY = "model/tinyreason_manifest.json"  # the stage's manifest, travelling with the model dir
# The licence a card can vouch for is the base model's; tinyreason cannot know the licence of
# the data a blend was read from, so any other card says "other" and asks for it in words.
KNOWN_LICENSES = {"HuggingFaceTB/SmolLM2-135M-Instruct": "apache-2.0"}


def hub_base(preset: str | None, name_or_path: str | None) -> str | None:
    """The Hub id the curriculum started from (None: a from-scratch preset or a local dir)."""
    if name_or_path:
        parts = name_or_path.split("/")
        looks_like_id = len(parts) == 2 and all(parts) and not name_or_path.startswith((".", "~"))
        return name_or_path if looks_like_id and not name_or_path.endswith(".gguf") else None
    return HUB_PRESETS.get(preset or "")


def _datasets(blend: dict | None) -> list[str]:
    return list(dict.fromkeys(s["source"] for s in (blend or {}).get("sources", [])))


def _metric_type(evaluation: dict | None, name: str, value: float) -> str:
    """The metric behind a benchmark's number as the Hub names metrics: "accuracy" for the held-out
    probe, lm-eval's metric name ("acc", "exact_match") for a task; the benchmark's name otherwise."""
    if name.startswith("heldout/"):
        return "accuracy"
    metrics = (((evaluation or {}).get("benchmarks") or {}).get("scores") or {}).get(name) or {}
    return next((k.split(",")[0] for k, v in metrics.items() if v == value), name)


def _eval_results(scores: dict, evaluation: dict | None) -> list[EvalResult]:
    return [EvalResult(task_type="text-generation", dataset_type=name, dataset_name=name,
                       metric_type=_metric_type(evaluation, name, s.value), metric_value=round(s.value, 6),
                       metric_name=name + (f" (± {s.se:.4f} se)" if s.se is not None else ""))
            for name, s in scores.items()]


def card_data(manifest: dict, blend: dict | None, evaluation: dict | None, base_model: str | None,
              experiment: str) -> ModelCardData:
    kind = manifest["kind"]
    return ModelCardData(
        base_model=base_model, datasets=_datasets(blend) or None, language=["en"],
        license=KNOWN_LICENSES.get(base_model or "", "other"), library_name="transformers",
        pipeline_tag="text-generation", tags=["tinyreason", kind, "trl"] + (["reasoning"] if kind in
                                                                           ("reasoning_sft", "grpo") else []),
        model_name=f"{experiment}-{manifest['stage']}",
        eval_results=_eval_results(table_with_errors(evaluation), evaluation) or None)


def _composition(blend: dict) -> str:
    rows = [[s["source"], s.get("subset") or "-", s.get("split", "-"), f"{s['kept']:,}", f"{s['share']:.1%}"]
            for s in blend.get("sources", [])]
    return md_table(["source", "subset", "split", "rows kept", "share"], rows)


def _training_table(manifest: dict) -> str:
    s, cfg = manifest.get("summary", {}), manifest.get("config", {})
    loss = (f"{s['loss_first']:.3f} -> {s['loss_last']:.3f}" if "loss_first" in s and "loss_last" in s else None)
    rows = [["kind", manifest["kind"]], ["started from", manifest["parent"]["name"]],
            ["training sequences", f"{manifest.get('sequences', 0):,}"], ["optimizer steps", s.get("steps")],
            ["loss first -> last", loss], ["workers", (cfg.get("scaling") or {}).get("num_workers")],
            ["train time", f"{manifest['train_seconds']:.0f} s" if "train_seconds" in manifest else None],
            ["tokens/s (median)", f"{s['tokens_per_s']:,.0f}" if "tokens_per_s" in s else None]]
    rows += [[k, f"{v:.4g}" if isinstance(v, float) else v] for k, v in (cfg.get("trainer") or {}).items()]
    return md_table(["setting", "value"], rows)


def model_card(manifest: dict, blend: dict | None = None, evaluation: dict | None = None,
               base_model: str | None = None, experiment: str = "tinyreason") -> ModelCard:
    """The card of one exported stage; scores appear once `evaluation` is given."""
    scores = table_with_errors(evaluation)
    data = card_data(manifest, blend, evaluation, base_model, experiment)
    stage, kind = manifest["stage"], manifest["kind"]
    summary = registry.get(kind).summary if kind in registry.names() else kind
    lines = [f"# {experiment}: {stage} ({kind})", "",
             f"{summary[:1].upper() + summary[1:]}: stage `{stage}` of the tinyreason curriculum `{experiment}`, "
             f"trained from `{manifest['parent']['name']}`" + (f" (the curriculum started from `{base_model}`)"
                                                              if base_model else "") + ".", ""]
    if data.license == "other":
        lines += ["License: not known to tinyreason. The weights follow from the base model and the data sources "
                  "listed below; set `license` in this header before publishing.", ""]
    lines += ["## Scores", ""]
    if scores:
        rows = [[name, f"{s:.3f}" if s.se is not None else f"{s.value:.3f}", s.n] for name, s in scores.items()]
        lines += [md_table(["benchmark", "score ± 1 standard error", "items"], rows, align=["left", "right", "right"]),
                  "",
                  "Held-out accuracy and format are on tinyreason's held-out synthetic problems (binomial standard "
                  "error); the other rows are lm-evaluation-harness tasks with lm-eval's standard error.", ""]
    else:
        lines += ["Not evaluated yet.", ""]
    lines += ["## Training", "", _training_table(manifest), ""]
    if manifest.get("base_weights"):  # a de-quantized GGUF base: every card downstream of it says so
        lines += [f"Base weights: {manifest['base_weights']}.", ""]
    b = manifest["blend"]
    lines += ["## Data", "", f"Blend `{b['name']}`: {b['rows']:,} rows, content hash `{b['content_hash']}`.", ""]
    if blend:
        lines += [_composition(blend), ""]
    lengths = token_lengths_section(manifest.get("tokens"))  # under this stage's tokenizer: what max_length did
    if lengths:
        lines += [lengths.strip(), ""]
    if manifest.get("chat"):  # which template, system prompt and think tokens the stage trained with
        lines += ["## Chat format", "", templates.describe(manifest["chat"]).strip(), ""]
    lines += ["## Settings", "", "The stage's full config, as tinyreason validated it:", "", "```yaml",
              yaml.safe_dump(manifest.get("config", {}), sort_keys=False, allow_unicode=True).rstrip(), "```", "",
              "Everything else (metrics summary, checkpoints, parent and blend keys) is in "
              "`tinyreason_manifest.json` beside this card.", ""]
    return ModelCard("---\n" + data.to_yaml() + "\n---\n\n" + "\n".join(lines))


def write_card(out: StageOutput, manifest: dict, blend: dict | None = None, evaluation: dict | None = None,
               base_model: str | None = None, experiment: str = "tinyreason") -> None:
    """model/README.md and model/tinyreason_manifest.json, written locally and to storage; the
    card is rewritten only when its text changed (a cached stage re-evaluated identically)."""
    text = str(model_card(manifest, blend, evaluation, base_model, experiment))
    path = out.file(CARD)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        out.write_text(CARD, text)
        out.write_json(MANIFEST_COPY, manifest)


def write_stage_card(ctx: RunContext, out: StageOutput, manifest: dict, stage: StageConfig,
                     evaluation: dict | None = None, blend: Blend | None = None) -> None:
    """`write_card` for a stage of the run `ctx` describes (its blend is read from the cache); a
    study's arms sharing the stage write it one at a time."""
    blend = blend or ctx.blend(stage)
    with ctx.exclusive(f"{out.rel}/{CARD}"):
        write_card(out, manifest, blend.manifest, evaluation,
                   hub_base(ctx.cfg.model.preset, ctx.cfg.model.name_or_path), ctx.cfg.name)
