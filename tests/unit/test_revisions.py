"""Pinned revisions of hub models and datasets: passed to the loaders, part of the keys,
recorded in manifests and blend cards; an unpinned hub source is allowed and said so.

No hub is reachable here: a model revision is resolved from a local hub cache laid out as
huggingface_hub writes it (two snapshots, `refs/main` at the newer), offline.
"""

from pathlib import Path

import pytest

from tinyreason.config.loading import load_config
from tinyreason.config.sections import SourceConfig
from tinyreason.data import sources
from tinyreason.data.blend import blend_key
from tinyreason.data.card import render_card
from tinyreason.data.sources import DataError

ROOT = Path(__file__).resolve().parents[2]
OLD, NEW = "a" * 40, "b" * 40


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """acme/llama in a hub cache: snapshot OLD has width 32 and a token <old>, NEW (refs/main) width 64."""
    import huggingface_hub.constants
    from transformers import LlamaConfig, LlamaForCausalLM

    from tinyreason.model.tokenizer import train_bpe

    repo = tmp_path / "hub" / "models--acme--llama"
    for sha, width in ((OLD, 32), (NEW, 64)):
        snap = repo / "snapshots" / sha
        tok = train_bpe(["a tiny corpus for a tiny tokenizer"] * 20, 300, snap)
        if sha == OLD:
            tok.add_special_tokens({"additional_special_tokens": ["<old>"]})
            tok.save_pretrained(snap)
        LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=width, intermediate_size=64, num_hidden_layers=1,
                                     num_attention_heads=4, num_key_value_heads=2)).save_pretrained(snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(NEW)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return "acme/llama"


def test_a_model_revision_reaches_from_pretrained(hub_cache):
    from tinyreason.model.presets import load_model
    from tinyreason.model.tokenizer import load_tokenizer

    assert load_model(hub_cache).config.hidden_size == 64  # unpinned: whatever main points at
    assert load_model(hub_cache, revision=OLD).config.hidden_size == 32
    assert "<old>" in load_tokenizer(hub_cache, revision=OLD).get_vocab()
    assert "<old>" not in load_tokenizer(hub_cache).get_vocab()


def test_a_pinned_base_model_carries_its_revision_into_the_keys(tmp_path):
    from tinyreason.base import prepare_base
    from tinyreason.context import RunContext

    def base(*sets):
        cfg = load_config(ROOT / "configs" / "micro.yaml", [f"storage.path={tmp_path}", "model.preset=smollm2-135m",
                                                             *sets])
        return prepare_base(RunContext.of(cfg))

    unpinned, pinned, other = base(), base(f"model.revision={OLD}"), base(f"model.revision={NEW}")
    assert unpinned.revision is None and pinned.revision == OLD and pinned.tokenizer_revision == OLD
    assert len({unpinned.key, pinned.key, other.key}) == 3  # a new pin is a new model, and so are its stages
    assert pinned.path == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_a_dataset_revision_reaches_load_dataset_and_its_error(monkeypatch):
    import datasets

    seen = {}

    def offline(*args, **kwargs):  # no hub here: record the call, fail as the hub client does offline
        seen.update(kwargs, args=args)
        raise ConnectionError("Couldn't reach 'acme/chat' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    src = SourceConfig(hub="acme/chat", subset="default", revision=OLD)
    with pytest.raises(DataError, match=f"revision={OLD}"):
        sources.read_source(src)
    assert seen["revision"] == OLD and seen["args"] == ("acme/chat", "default")
    with pytest.raises(DataError, match="revision=unpinned"):
        sources.read_source(SourceConfig(hub="acme/chat"))
    assert seen["revision"] is None


def test_a_pin_changes_the_blend_key_and_an_unpinned_blend_keeps_its_key():
    from tinyreason.config.sections import BlendConfig

    def key(**src):
        return blend_key(BlendConfig(sources=[SourceConfig(hub="acme/chat", **src)]), "chat", 0)

    assert key() == key(revision=None)
    assert len({key(), key(revision=OLD), key(revision=NEW)}) == 3
    assert sources.fingerprint(SourceConfig(hub="acme/chat", revision=OLD)) == {"revision": OLD}


def _manifest(*srcs: dict) -> dict:
    base = {"subset": "", "split": "train", "requested": None, "read": 10, "kept": 10, "rejected": {},
            "decontaminated": 0, "share": 0.5, "columns": []}
    return {"name": "b", "schema": "chat", "key": "k", "rows": 20, "heldout_rows": 0, "content_hash": "h",
            "sources": [{**base, **s} for s in srcs], "rejected_total": 0, "decontaminated_total": 0,
            "decontamination": None}


def test_the_card_says_which_hub_sources_were_pinned():
    card = render_card(_manifest({"source": "acme/chat", "revision": OLD}, {"source": "acme/math", "revision": None},
                                 {"source": "synthetic:chat"}))
    assert f"acme/chat @ {OLD}" in card and "acme/math (unpinned)" in card
    assert f"Hub sources pinned: `acme/chat` at `{OLD}`" in card
    assert "Unpinned: `acme/math` read whatever the hub served" in card and "revision:" in card
    plain = render_card(_manifest({"source": "synthetic:chat"}))
    assert "unpinned" not in plain.lower() and "pinned" not in plain


def test_a_stage_manifest_records_its_parents_pin(tmp_path):
    from types import SimpleNamespace

    from tinyreason.outputs import ModelRef, Outputs
    from tinyreason.stage import stage_manifest
    from tinyreason.storage import Storage

    cfg = load_config(ROOT / "configs" / "micro.yaml")
    blend = SimpleNamespace(path=tmp_path / "chat-blend-k", manifest={"key": "k", "content_hash": "h"}, rows=10)
    out = Outputs(Storage(str(tmp_path))).stage(1, "sft", "key")
    pinned = ModelRef("base", "HuggingFaceTB/SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", "k", OLD)
    manifest = stage_manifest(cfg.stages[1], "key", pinned, blend, out, 10, 1.0)
    assert manifest["parent"]["revision"] == OLD
    plain = stage_manifest(cfg.stages[1], "key", ModelRef("base", "/m", "/m", "k"), blend, out, 10, 1.0)
    assert "revision" not in plain["parent"]
