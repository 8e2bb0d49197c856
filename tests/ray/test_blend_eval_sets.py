"""What a chat-SFT blend keeps out, on a real local Ray: rows that think (rejected and counted
by default, kept with `data.think_rows: keep`), and the items of every configured benchmark
with local data: a user task's data file in an `include_path` dir, a hub dataset in the
local Hugging Face cache, the synthetic probe; a benchmark whose data is not here (lm-eval's
arc_challenge, never downloaded) is named on the card."""

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from tinyreason.config.sections import BlendConfig, EvalConfig
from tinyreason.data.blend import build_blend
from tinyreason.eval.sets import decontaminator_for

F = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
HUB_QUESTION = "How many legs does a spider have in total, counting every one of them?"


def rows_of(b):
    return pq.read_table(b.path / "data").to_pylist()


def texts_of(b) -> list[str]:
    return [m["content"] for r in rows_of(b) for m in r["messages"]]


def test_a_chat_blend_rejects_thinking_rows_and_counts_them_unless_kept(ray_local, tmp_path):
    cfg = BlendConfig.model_validate({"name": "smoltalk2", "sources": [{"files": str(F / "smoltalk2_sft.jsonl")}]})
    default = build_blend(cfg, "chat", tmp_path / "a", seed=0)
    [s] = default.manifest["sources"]
    assert s["rejected"]["think_in_chat"] == 2 and s["kept"] == 21
    assert not any("<think>" in t for t in texts_of(default))
    card = (default.path / "card.md").read_text()
    assert "`think_in_chat` (2)" in card and "trains without thinking" in card
    kept = build_blend(cfg, "chat", tmp_path / "b", seed=0, think="keep")
    [s] = kept.manifest["sources"]
    assert "think_in_chat" not in s["rejected"] and s["rejected"]["multiple_think"] == 1 and s["kept"] == 22
    assert sum("<think>" in t for t in texts_of(kept)) == 1  # the well-formed one; two blocks never pass
    assert "`data.think_rows: keep`" in (kept.path / "card.md").read_text()
    assert kept.manifest["key"] != default.manifest["key"]


def _hub_cache(tmp_path: Path) -> Path:
    """A Hugging Face datasets cache holding `tinyreason/smoke_hub_qa` as a hub download leaves
    it (<org>___<name>/<config>/<version>/<commit>/), built by datasets' own json builder."""
    from datasets.packaged_modules.json.json import Json

    rows = tmp_path / "hub_qa.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in [
        {"question": HUB_QUESTION, "answer": "8"},
        {"question": "Which planet in our solar system is known as the red planet?", "answer": "Mars"}]))
    builder = Json(cache_dir=str(tmp_path / "build"), dataset_name="smoke_hub_qa", config_name="default",
                   data_files={"test": str(rows)}, hash="0123abcd")
    builder.download_and_prepare()
    cache = tmp_path / "hf-datasets"
    target = cache / "tinyreason___smoke_hub_qa" / "default" / "0.0.0" / "0123abcd"
    target.parent.mkdir(parents=True)
    shutil.move(builder.cache_dir, target)
    return cache


def _task_dir(tmp_path: Path, cache: Path) -> Path:
    """A user's task dir: one task on a local json file, one on a hub dataset (cached)."""
    d = tmp_path / "my_tasks"
    d.mkdir()
    (d / "my_benchmark.yaml").write_text(
        "task: my_benchmark\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {json.dumps(str(F / 'benchmark.jsonl'))}\ntest_split: test\noutput_type: generate_until\n"
        "doc_to_text: \"Question: {{question}}\\nAnswer:\"\ndoc_to_target: '{{answer}}'\n"
        "metric_list:\n  - metric: exact_match\n")
    (d / "my_hub_qa.yaml").write_text(
        f"task: my_hub_qa\ndataset_path: tinyreason/smoke_hub_qa\ndataset_kwargs:\n  cache_dir: {json.dumps(str(cache))}\n"
        "test_split: test\noutput_type: generate_until\ndoc_to_text: '{{question}}'\ndoc_to_target: '{{answer}}'\n"
        "metric_list:\n  - metric: exact_match\n")
    return d


def test_a_blend_is_decontaminated_against_every_benchmark_with_local_data(ray_local, tmp_path):
    tasks = _task_dir(tmp_path, _hub_cache(tmp_path))
    ev = EvalConfig.model_validate({"heldout_problems": 0, "benchmarks": {"include_path": [str(tasks)], "tasks": [
        {"task": "my_benchmark"}, {"task": "my_hub_qa"}, {"task": "arc_challenge"}, {"task": "tinyreason_choice"}]}})
    suite = decontaminator_for(ev)
    assert [s.name for s in suite.sets] == [
        "200 held-out synthetic problems in each phrasing (the probe and the built-in tinyreason tasks)",
        f"task my_benchmark ({F / 'benchmark.jsonl'})", "task my_hub_qa (tinyreason/smoke_hub_qa [test], local cache)"]
    assert [len(s.texts) for s in suite.sets[1:]] == [8, 4]  # each item's question and its answer (answers under 5 words never match: the card counts 4 and 2)
    [arc] = suite.unreadable
    assert arc["name"] == "task arc_challenge" and "allenai/ai2_arc" in arc["why"] and "cache" in arc["why"]

    planted = tmp_path / "planted.jsonl"
    planted.write_text(json.dumps({"messages": [{"role": "user", "content": f"Quick one: {HUB_QUESTION}"},
                                                {"role": "assistant", "content": "Eight."}]}) + "\n")
    cfg = BlendConfig.model_validate({"name": "decon", "sources": [
        {"files": str(F / "smoltalk2_sft.jsonl")}, {"files": str(planted)}, {"synthetic": "chat", "entries": 40}]})
    b = build_blend(cfg, "chat", tmp_path / "blends", seed=0, decontaminate=suite)
    assert [s["decontaminated"] for s in b.manifest["sources"]] == [1, 1, 0]
    texts = texts_of(b)
    assert not any("A baker fills 17 trays" in t or HUB_QUESTION in t for t in texts)
    card = (b.path / "card.md").read_text()
    assert "Against 3 evaluation set(s) with local data: 2 rows removed" in card
    assert f"| task my_benchmark ({F / 'benchmark.jsonl'}) | 4 | 13 | 50% | 1 |" in card
    assert "| task my_hub_qa (tinyreason/smoke_hub_qa [test], local cache) | 2 | 13 | 50% | 1 |" in card
    assert "| 200 held-out synthetic problems" in card and "A baker fills 17 trays" in card
    assert "Not checked, because their data cannot be read on this machine:\n- task arc_challenge: " in card
    described = b.manifest["decontamination"]
    assert [s["rows_removed"] for s in described["sets"]] == [0, 1, 1] and described["key"] == suite.key
