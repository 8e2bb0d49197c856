"""The micro curriculum's final model as GGUF (f16 and q8_0), the way a user exports it,
`python jobs/export.py <stage dir>`: each file read back through transformers' `gguf_file=`
gives the same greedy tokens on 5 chat prompts as the safetensors model (f16) or close logits
(q8_0), and the template it carries renders in plain Jinja2. Reads the micro job's storage
(tests/conftest.py: `micro_job`): every stage is reused from it."""

import json
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from tinyreason.config.loading import load_config
from tinyreason.curriculum import run_curriculum
from tinyreason.model import gguf as tg
from tinyreason.model.gguf_export import CHECK_QUESTIONS, Q8_0_TOLERANCE
from tinyreason.model.plain_jinja import PLAIN_TEMPLATE

ROOT = Path(__file__).resolve().parents[2]
CHAT = [{"role": "user", "content": "What is 7 plus 5?"}, {"role": "assistant", "content": "<think>\n7+5\n</think>\n12"},
        {"role": "user", "content": "And 7 plus 6?"}]


@pytest.fixture(scope="module")
def final_stage(ray_local, micro_storage, micro_job):  # the job's stages, reused
    cfg = load_config("configs/micro.yaml", [f"storage.path={micro_storage}", *micro_job.overrides])
    return run_curriculum(cfg).stages[-1]


@pytest.fixture(scope="module")
def exported(final_stage, tmp_path_factory):
    out = tmp_path_factory.mktemp("gguf")
    job = subprocess.run([sys.executable, "jobs/export.py", str(final_stage.dir), "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    return out, json.loads((out / "gguf_export.json").read_text()), job


def test_f16_and_q8_0_are_written_and_read_back_with_the_same_tokens_or_close_logits(exported, final_stage):
    out, record, job = exported
    files = {r["outtype"]: r for r in record["files"]}
    assert set(files) == {"f16", "q8_0"} and record["model_dir"] == str(final_stage.dir / "model")
    assert files["f16"]["same_greedy_tokens"] == files["f16"]["prompts"] == len(CHECK_QUESTIONS) == 5
    assert 0 < files["q8_0"]["max_abs_logit_diff"] <= Q8_0_TOLERANCE * files["q8_0"]["logit_range"]
    assert files["q8_0"]["bytes"] < files["f16"]["bytes"]
    assert "same greedy tokens" in job.stdout + job.stderr  # the console says what was checked


def test_an_independent_read_back_agrees(exported, final_stage):
    """Not the job's own check: greedy tokens of the f16 file, loaded here, on the 5 prompts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, record, _ = exported
    f16 = next(Path(r["file"]) for r in record["files"] if r["outtype"] == "f16")
    back, back_tok = tg.load_back(f16)
    model_dir = final_stage.dir / "model"
    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModelForCausalLM.from_pretrained(model_dir).eval()
    for q in CHECK_QUESTIONS:
        prompt = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        assert back_tok(prompt, add_special_tokens=False)["input_ids"] == ids[0].tolist()
        with torch.no_grad():
            a = model.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=tok.eos_token_id)
            b = back.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=tok.eos_token_id)
        assert a.tolist() == b.tolist(), q


def test_the_template_in_the_gguf_and_beside_the_model_renders_in_plain_jinja2(exported, final_stage):
    import gguf
    from transformers import AutoTokenizer

    out, record, _ = exported
    tok = AutoTokenizer.from_pretrained(final_stage.dir / "model")
    plain = (final_stage.dir / "model" / PLAIN_TEMPLATE).read_text()
    for r in record["files"]:
        template = gguf.GGUFReader(r["file"]).fields["tokenizer.chat_template"].contents()
        assert template == plain and "{% generation %}" not in template
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    for gen in (False, True):
        assert env.from_string(plain).render(messages=CHAT, add_generation_prompt=gen) == \
            tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=gen)


def test_an_architecture_the_exporter_cannot_write_is_one_clear_line(tmp_path):
    from families import make_family

    qwen3 = make_family("qwen3", tmp_path / "qwen3")
    out = subprocess.run([sys.executable, "jobs/export.py", str(qwen3), "--out", str(tmp_path / "o")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr
    assert "architecture Qwen3ForCausalLM cannot be written as GGUF here" in out.stderr
    assert "fix: export a model of a supported architecture: LlamaForCausalLM" in out.stderr
    assert not list((tmp_path / "o").glob("*.gguf"))
