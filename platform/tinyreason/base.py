"""The model each stage starts from. Stage 1's: a hub id or a local model dir as it is, a GGUF
file converted once to a safetensors dir, or a fresh preset with a BPE tokenizer trained on the
first pretrain stage's blend. Every other stage's: its parent's export (the stage before it, or
the one its `parent:` names), or with `init:` fresh weights of a preset's shape holding the
parent's tokenizer."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from tinyreason.config.experiment import StageConfig
from tinyreason.context import RunContext
from tinyreason.data.blend import Blend
from tinyreason.model import gguf, presets
from tinyreason.model.tokenizer import load_tokenizer, prepare_chat_tokenizer, train_bpe
from tinyreason.outputs import MANIFEST, ModelRef, OutputDir, Outputs, digest

log = logging.getLogger(__name__)


def prepare_base(ctx: RunContext) -> ModelRef:
    cfg = ctx.cfg
    source = presets.weights_source(cfg.model.preset, cfg.model.name_or_path)
    if source is not None and gguf.is_gguf(source):
        out, key = convert_gguf(ctx.outputs, source)
        return ModelRef("base", str(out.path), cfg.tokenizer.path or str(out.path), key)
    if source is not None:
        pin = {"revision": cfg.model.revision} if cfg.model.revision else {}  # unpinned keys stay as they were
        return ModelRef("base", source, cfg.tokenizer.path or source, digest({"model": source, **pin}),
                        cfg.model.revision)

    first = cfg.stages[0]
    if cfg.tokenizer.path is None and first.kind != "pretrain":
        raise ValueError(
            f"model.preset={cfg.model.preset!r} starts from scratch, which needs a tokenizer: set tokenizer.path "
            "or make the first stage a pretrain stage (its corpus trains one)"
        )
    blend = ctx.blend(first)
    key = digest({"preset": cfg.model.preset, "tok": cfg.tokenizer.model_dump(), "corpus": blend.manifest["key"],
                  "seed": cfg.seed, "attn": cfg.model.attn_implementation})
    out = ctx.outputs.base(f"{cfg.model.preset}-{key}")
    with ctx.exclusive(out.rel):
        if not out.complete():
            _build_base(ctx, blend, out.path)
            out.publish(marker=MANIFEST)
    return ModelRef("base", str(out.path), str(out.path), key)


def convert_gguf(outputs: Outputs, source: str | Path) -> tuple[OutputDir, str]:
    """A GGUF file as a safetensors model dir under `base/<file stem>-<key>`, converted once.

    The key is the file's sha256, so the same weights at another path reuse the dir and a
    re-downloaded, changed file converts anew. Every stage, the evaluator and the exports
    start from this dir, never from the GGUF. ~1 min for SmolLM2 on 2 cores, then ~0.3 s
    (the hash) per run."""
    path = Path(source).expanduser()
    info = gguf.check(path)
    key = digest({"gguf_sha256": gguf.file_digest(path), "converter": 1})
    out = outputs.base(f"{path.stem}-{key}")
    if out.complete():  # on object storage the stages and the evaluator fetch it where they run
        return out, key
    shutil.rmtree(out.path, ignore_errors=True)  # no manifest: a conversion that died before its end
    gguf.convert(path, out.path)
    note = gguf.origin(info)
    out.file("README.md").write_text(f"# {path.stem}\n\nConverted by tinyreason: {note}.\n\n"
                                     f"Conversion record (source, checks, versions): `{gguf.RECORD}`.\n")
    out.file(MANIFEST).write_text(json.dumps({"gguf": info.path, "key": key, "origin": note}, indent=2))
    out.publish(marker=MANIFEST)
    return out, key


def _build_base(ctx: RunContext, blend: Blend, out: Path) -> None:
    cfg = ctx.cfg
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if cfg.tokenizer.path:
        tok = load_tokenizer(cfg.tokenizer.path, cfg.model.trust_remote_code)
    else:
        texts = [r["text"] for r in blend.dataset().select_columns(["text"]).take(cfg.tokenizer.train_rows)]
        log.info("training a %d-token BPE tokenizer on %s documents", cfg.tokenizer.train_vocab_size,
                 f"{len(texts):,}")
        tok = train_bpe(texts, cfg.tokenizer.train_vocab_size, tmp)
    tok = prepare_chat_tokenizer(tok, install_chatml=True)  # a from-scratch model is born with our ChatML
    model = presets.init_model(cfg.model.preset, tok, cfg.model.attn_implementation, seed=cfg.seed)
    n = presets.count_parameters(model)
    log.info("initialised a %s Llama: %.2fM parameters, vocab %d", cfg.model.preset, n / 1e6, len(tok))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / MANIFEST).write_text(json.dumps({"preset": cfg.model.preset, "parameters": n, "vocab": len(tok)}))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def start_of(ctx: RunContext, stage: StageConfig, previous: ModelRef) -> ModelRef:
    """The model `stage` starts from; `previous` is the export of the stage before it."""
    parent = ctx.models[stage.parent] if stage.parent else previous
    if stage.init is None:
        return parent
    cfg = ctx.cfg
    key = digest({"init": stage.init, "tokenizer": parent.key, "seed": cfg.seed, "attn": cfg.model.attn_implementation})
    out = ctx.outputs.base(f"{stage.init}-{key}")
    if not out.complete():
        tok = load_tokenizer(ctx.store.localize(parent.tokenizer), cfg.model.trust_remote_code)
        model = presets.init_model(stage.init, tok, cfg.model.attn_implementation, seed=cfg.seed)
        n = presets.count_parameters(model)
        log.info("stage %s starts from fresh %s weights: %.2fM parameters, %s's tokenizer", stage.name, stage.init,
                 n / 1e6, parent.name)
        tmp = out.path.with_name(out.path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / MANIFEST).write_text(json.dumps({"preset": stage.init, "parameters": n, "vocab": len(tok),
                                                "tokenizer_of": parent.name}))
        shutil.rmtree(out.path, ignore_errors=True)
        tmp.rename(out.path)
        out.publish(marker=MANIFEST)
    return ModelRef(f"{stage.init} (fresh)", str(out.path), str(out.path), key)
