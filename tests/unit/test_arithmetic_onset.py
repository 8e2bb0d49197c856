"""bench/arithmetic_onset.py: the plain drill loop that sized the default's pre-training blend."""

import json

import pytest


def test_the_loop_trains_on_drills_and_probes_at_each_quarter(bench_script, tmp_path, monkeypatch):
    import torch

    from tinyreason.data import synthetic
    from tinyreason.model import presets
    from tinyreason.model.tokenizer import prepare_chat_tokenizer, train_bpe

    onset = bench_script("arithmetic_onset")
    seen = []
    monkeypatch.setattr(onset, "probe_facts", lambda model, tok: seen.append(model.training) or {"add": 0.5})
    base = tmp_path / "base"
    tok = prepare_chat_tokenizer(train_bpe([r["text"] for r in synthetic.pretrain_rows(300, 0)], 400, base))
    presets.init_model("micro", tok).save_pretrained(base)
    threads = torch.get_num_threads()
    try:
        onset.main([str(base), "--steps", "8", "--lr", "1e-3", "3e-3"])
    finally:
        torch.set_num_threads(threads)
    record = json.loads(onset.OUT.read_text())
    assert [r["lr"] for r in record["runs"]] == [1e-3, 3e-3]
    assert [p["step"] for p in record["runs"][0]["points"]] == [2, 4, 6, 8]
    assert all(p["facts_right"] == {"add": 0.5} and p["loss"] > 0 for r in record["runs"] for p in r["points"])
    assert seen == [True] * 8  # probed mid-training, on the model being trained
    assert record["setting"] == {"rows_per_step": 4, "row_tokens": 256, "steps": 8}
