"""Blends built on a real local Ray from fixture files shaped like the real sources
(tests/fixtures/make_sources.py): several schemas at once, bad rows mixed in, the
hub code path on a local hub-shaped dataset dir, caching, and decontamination."""

import json
import shutil
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tinyreason.config.sections import BlendConfig
from tinyreason.data.blend import PROVENANCE, blend_key, build_blend, content_hash, row_hash
from tinyreason.data.decontam import Decontaminator, eval_texts_from_files, eval_texts_from_synthetic
from tinyreason.data.sources import DataError

F = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
HUB = str(F / "smoltalk2")
SFT_SPLIT = "smoltalk_smollm3_everyday_conversations_no_think"
MID_SPLIT = "OpenThoughts3_1.2M"


def rows_of(blend, sub="data"):
    return pq.read_table(blend.path / sub).to_pylist()


def blend(name, *sources, **kw):
    return BlendConfig.model_validate({"name": name, "sources": list(sources), **kw})


@pytest.fixture(scope="module")
def sft(ray_local, tmp_path_factory):
    cfg = blend(
        "mixed-sft",
        {"files": str(F / "smoltalk2_sft.jsonl")},  # smoltalk2 rows, chat_template_kwargs struct
        {"files": str(F / "sharegpt.json")},  # a JSON array of from/value conversations
        {"files": str(F / "chat.csv"), "entries": 6},  # prompt,completion; the bad row is past the cap
        {"hub": HUB, "subset": "SFT", "split": SFT_SPLIT},  # the hub code path, streaming
        {"synthetic": "chat", "entries": 30},
    )
    return build_blend(cfg, "chat", tmp_path_factory.mktemp("blends"), seed=0)


def test_counts_caps_and_reject_reasons_per_source(sft):
    got = [(s["read"], s["kept"], s["rejected"]) for s in sft.manifest["sources"]]
    assert got == [
        (27, 21, {"bad_json": 1, "bad_turn_order": 1, "empty_content": 1, "last_not_assistant": 1,
                  "think_in_chat": 2}),
        (14, 12, {"empty_content": 1, "unknown_role": 1}),
        (6, 6, {}),
        (13, 12, {"last_not_assistant": 1}),
        (30, 30, {}),
    ]
    assert sft.rows == 81 == len(rows_of(sft)) and sft.manifest["rejected_total"] == 9
    assert sft.manifest["sources"][2]["requested"] == 6
    samples = [json.loads(line) for line in (sft.path / "rejected.jsonl").read_text().splitlines()]
    assert {s["reason"] for s in samples} == {"bad_json", "bad_turn_order", "empty_content", "last_not_assistant",
                                              "unknown_role", "think_in_chat"}


def test_every_row_is_canonical_and_carries_its_provenance(sft):
    rows = rows_of(sft)
    assert all(r[c] is not None for r in rows for c in PROVENANCE)
    by_source = {}
    for r in rows:
        by_source[(r["_source_dataset"], r["_source_subset"], r["_source_split"])] = \
            by_source.get((r["_source_dataset"], r["_source_subset"], r["_source_split"]), 0) + 1
    assert by_source[(HUB, "SFT", SFT_SPLIT)] == 12 and by_source[("synthetic:chat", "", "train")] == 30
    assert by_source[(str(F / "sharegpt.json"), "", "train")] == 12
    for r in rows:
        roles = [m["role"] for m in r["messages"]]
        assert roles[-1] == "assistant" and set(roles) <= {"system", "user", "assistant"}
    hub_row = next(r for r in rows if r["_source_split"] == SFT_SPLIT)
    assert json.loads(hub_row["chat_template_kwargs"])["enable_thinking"] is False


def test_card_table_and_content_hash(sft):
    card = (sft.path / "card.md").read_text()
    table = [[c.strip().replace("\\_", "_") for c in line.strip().strip("|").split("|")]
             for line in card.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 5 + 1  # header and rule, one row per source, total
    assert [HUB, "SFT", SFT_SPLIT, "all", "12", "last_not_assistant: 1", "0", "14.8%"] in table
    assert table[2 + 2][2:] == ["train", "6", "6", "0", "0", "7.4%"] and table[-1][:6] == ["total", "", "", "", "81", "9"]
    assert "`unknown_role` (1): A message role is not system" in card
    assert "`think_in_chat` (2)" in card  # smoltalk2's two thinking rows: a chat stage trains without thinking
    assert f"`{sft.manifest['content_hash']}`" in card
    assert sft.manifest["content_hash"] == content_hash(row_hash(r, "chat") for r in rows_of(sft))


def test_unchanged_blend_is_cached_changed_file_rebuilds(ray_local, tmp_path):
    src = tmp_path / "chat.jsonl"
    shutil.copy(F / "smoltalk2_sft.jsonl", src)
    cfg = blend("edit-me", {"files": str(src)}, {"synthetic": "chat", "entries": 20})
    first = build_blend(cfg, "chat", tmp_path / "a", seed=3)
    started = time.time()
    again = build_blend(cfg, "chat", tmp_path / "a", seed=3)
    assert again.cached and again.path == first.path and time.time() - started < 1.0
    # same config elsewhere: same rows in the same seeded order, so the same content hash
    elsewhere = build_blend(cfg, "chat", tmp_path / "b", seed=3)
    assert not elsewhere.cached and rows_of(elsewhere) == rows_of(first)
    assert elsewhere.manifest["content_hash"] == first.manifest["content_hash"]
    with open(src, "a", encoding="utf-8") as f:
        f.write(json.dumps({"messages": [{"role": "user", "content": "New?"},
                                         {"role": "assistant", "content": "Yes, new."}]}) + "\n")
    changed = build_blend(cfg, "chat", tmp_path / "a", seed=3)
    assert not changed.cached and changed.path != first.path and changed.rows == first.rows + 1
    assert changed.manifest["content_hash"] != first.manifest["content_hash"]


def test_reasoning_blend_from_parquet_and_hub_dir_with_heldout(ray_local, tmp_path):
    cfg = blend(
        "reasoning",
        {"files": str(F / "reasoning.parquet")},
        {"hub": HUB, "subset": "Mid", "split": MID_SPLIT, "entries": 5, "drop_columns": ["chat_template_kwargs"]},
        {"hub": HUB, "subset": "Mid", "split": MID_SPLIT, "streaming": False},
        heldout_fraction=0.2,
    )
    b = build_blend(cfg, "reasoning", tmp_path, seed=0)
    got = [(s["read"], s["kept"], s["rejected"]) for s in b.manifest["sources"]]
    assert got == [(17, 14, {"missing_think": 1, "text_before_think": 1, "unbalanced_think": 1}),
                   (5, 5, {}), (11, 10, {"empty_answer": 1})]
    held = rows_of(b, "heldout")
    assert b.rows + len(held) == 29 and len(held) == b.manifest["heldout_rows"] > 0
    assert all("</think>" in r["messages"][-1]["content"] for r in rows_of(b) + held)


def test_preference_blend_from_olmo_style_pairs(ray_local, tmp_path):
    cfg = blend("olmo", {"files": str(F / "olmo3_preference.jsonl"), "drop_columns": ["prompt", "category", "prompt_id"],
                         "rename_columns": {"dataset": "source"}})
    b = build_blend(cfg, "preference", tmp_path, seed=0)
    s = b.manifest["sources"][0]
    assert (s["read"], s["kept"]) == (19, 16)
    assert s["rejected"] == {"bad_json": 1, "chosen_equals_rejected": 1, "missing_rejected": 1}
    for r in rows_of(b):  # the shared prefix (system + user) became the prompt
        assert [m["role"] for m in r["prompt"]] == ["system", "user"]
        assert [m["role"] for m in r["chosen"]] == ["assistant"] == [m["role"] for m in r["rejected"]]
        assert r["chosen"][0]["content"] != r["rejected"][0]["content"]


def test_planted_benchmark_items_are_removed_and_counted(ray_local, tmp_path):
    heldout = eval_texts_from_synthetic(50)
    planted = tmp_path / "planted.jsonl"
    planted.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": q},
                                                          {"role": "assistant", "content": "The answer is 7."}]})
                                 for q in (heldout[7], "What is 2 plus 2 today, my friend?")) + "\n")
    decon = Decontaminator(eval_texts_from_files(str(F / "benchmark.jsonl")) + heldout, n=8, threshold=1.0,
                           name="benchmark + held-out")
    cfg = blend("decon", {"files": str(F / "smoltalk2_sft.jsonl")}, {"files": str(planted)},
                {"synthetic": "chat", "entries": 200})
    b = build_blend(cfg, "chat", tmp_path, seed=0, decontaminate=decon)
    assert [s["decontaminated"] for s in b.manifest["sources"]] == [1, 1, 0]
    assert [s["kept"] for s in b.manifest["sources"]] == [20, 1, 200]
    texts = {m["content"] for r in rows_of(b) for m in r["messages"]}
    assert heldout[7] not in texts and not any("A baker fills 17 trays" in t for t in texts)
    card = (b.path / "card.md").read_text()
    assert "2 rows removed" in card and "A baker fills 17 trays" in card
    # the eval set is part of the cache key: a blend built without it is another blend
    assert b.manifest["key"] == blend_key(cfg, "chat", 0, extra={"decon": decon.key, "think": "reject"})
    assert b.manifest["key"] != blend_key(cfg, "chat", 0, extra={"decon": None, "think": "reject"})


def test_all_bad_source_fails_naming_the_blend(ray_local, tmp_path):
    cfg = blend("broken", {"files": str(F / "chat.csv")}, {"files": str(F / "all_bad.jsonl")})
    with pytest.raises(DataError, match=r"blend broken .*all_bad\.jsonl.*all 6 rows were rejected "
                                        r"\(last_not_assistant: 6\)"):
        build_blend(cfg, "chat", tmp_path)


def test_unknown_drop_column_fails_listing_the_real_ones(ray_local, tmp_path):
    cfg = blend("typo", {"files": str(F / "olmo3_preference.jsonl"), "drop_columns": ["categroy"]})
    with pytest.raises(DataError, match=r"\['categroy'\], which no row has; its columns are .*'category'"):
        build_blend(cfg, "preference", tmp_path)


def test_non_utf8_file_fails_naming_the_file(ray_local, tmp_path):
    cfg = blend("latin", {"files": str(F / "latin1.jsonl")})
    with pytest.raises(DataError, match=r"latin1\.jsonl is not UTF-8.*iconv"):
        build_blend(cfg, "chat", tmp_path)
