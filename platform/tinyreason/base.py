"""The model stage 1 starts from: a hub id or a local model dir as it is, or a fresh
preset with a BPE tokenizer trained on the first pretrain stage's blend."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from tinyreason.context import RunContext
from tinyreason.data.blend import Blend
from tinyreason.model import presets
from tinyreason.model.tokenizer import load_tokenizer, prepare_chat_tokenizer, train_bpe
from tinyreason.outputs import MANIFEST, ModelRef, digest

log = logging.getLogger(__name__)


def prepare_base(ctx: RunContext) -> ModelRef:
    cfg = ctx.cfg
    source = presets.weights_source(cfg.model.preset, cfg.model.name_or_path)
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
