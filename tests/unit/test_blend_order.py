"""The seeded shuffle orders rows by what they are, not by where their files sit.

The ray tier's GRPO test trained on rows from pytest's per-session temporary dir; with the path
in the shuffle key every session trained in another order, and once in about five sessions its
reward collapsed. The same holds for a researcher's copy of a dataset in another checkout.
"""

from __future__ import annotations

import json

from tinyreason.config.sections import BlendConfig, SourceConfig
from tinyreason.data import blend
from tinyreason.data.blend import blend_key, clean_batch, row_hash, shuffle_key

ROWS = [{"prompt": [{"role": "user", "content": f"Is {i + 7} bigger than {i}?"}], "answer": "yes"} for i in range(6)]


def _batch(rows):
    return {"_json": [json.dumps(r) for r in rows]}


def _cleaned(src: SourceConfig, index: int = 0, seed: int = 0) -> dict:
    return clean_batch(_batch(ROWS), src, index, "prompt", max_chars=10_000, seed=seed).to_pydict()


def test_the_same_files_in_two_directories_shuffle_the_same_and_record_their_own_paths(tmp_path):
    a, b = tmp_path / "mine" / "prompts.jsonl", tmp_path / "a colleague's" / "prompts.jsonl"
    here, there = _cleaned(SourceConfig(files=str(a))), _cleaned(SourceConfig(files=str(b)))
    assert here["_order"] == there["_order"]
    assert set(here["_source_dataset"]) == {str(a)} and set(there["_source_dataset"]) == {str(b)}
    assert here["_h"] != there["_h"]  # a row's provenance hash still names its file
    assert _cleaned(SourceConfig(files=str(a)), seed=1)["_order"] != here["_order"]


def test_a_hub_datasets_local_copy_in_two_places_shuffles_the_same(tmp_path):
    copies = [tmp_path / "mirror" / "smoltalk2", tmp_path / "scratch" / "smoltalk2"]
    for d in copies:
        d.mkdir(parents=True)
    here, there = (_cleaned(SourceConfig(hub=str(d), subset="SFT", split="x")) for d in copies)
    assert here["_order"] == there["_order"] and here["_source_dataset"] != there["_source_dataset"]


def test_a_local_source_at_another_place_in_the_blend_shuffles_differently(tmp_path):
    src = SourceConfig(files=str(tmp_path / "prompts.jsonl"))
    assert _cleaned(src, index=0)["_order"] != _cleaned(src, index=1)["_order"]


def test_named_sources_keep_the_order_they_had_so_the_demo_trains_as_recorded():
    src = SourceConfig(hub="openai/gsm8k", subset="main")
    got = _cleaned(src)
    prov = {"_source_dataset": "openai/gsm8k", "_source_subset": "main", "_source_split": "train"}
    payload = {"prompt": ROWS[0]["prompt"], "answer": "yes", "chat_template_kwargs": "{}"}
    assert got["_order"][0] == shuffle_key(row_hash({**payload, **prov}, "prompt"), 0)


def test_only_blends_with_a_local_source_change_their_key(tmp_path, monkeypatch):
    (tmp_path / "p.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    files = BlendConfig(name="p", sources=[SourceConfig(files=str(tmp_path / "p.jsonl"))])
    hub = BlendConfig(name="p", sources=[SourceConfig(hub="openai/gsm8k", subset="main", revision="abc")])
    synthetic = BlendConfig(name="s", sources=[SourceConfig(synthetic="prompts", entries=20)])
    now = {name: blend_key(b, "prompt", 0) for name, b in [("files", files), ("hub", hub), ("synthetic", synthetic)]}
    # the rule before: no source ordered as local, a file source named by its path
    monkeypatch.setattr(blend, "is_local", lambda src: False)
    before = {name: blend_key(b, "prompt", 0) for name, b in [("files", files), ("hub", hub), ("synthetic", synthetic)]}
    assert now["files"] != before["files"]  # a cache ordered by the path rebuilds
    assert now["hub"] == before["hub"] and now["synthetic"] == before["synthetic"]  # stored stages stay current
