"""Distillation and LoRA configs: teacher sources, the distill stage, the peft section and the
stage references (`parent`, `init`, teachers) fail before any work, naming the field and the fix;
and the pure pieces (filters, completion rows, KL, the card, sweep points) do what they say."""

import copy

import pytest
import yaml

from tinyreason import refs
from tinyreason.config.base import CONFIG_DIR, ConfigError, read_yaml
from tinyreason.config.lora import PeftSection, unmatched_targets
from tinyreason.config.loading import load_config, validate_config
from tinyreason.config.sections import TeacherFilters
from tinyreason.config.sweeps import apply_point, load_sweep, section_of
from tinyreason.data.card import render_card
from tinyreason.data.teacher import judge, pair_up
from tinyreason.train import registry, sft
from tinyreason.train.kind import LOSS, StageKind

DEMO = CONFIG_DIR / "distill-demo.yaml"


@pytest.fixture(scope="module")
def demo():
    return read_yaml(DEMO)


def _check(raw, **edits):
    """Validate the demo with each stage named in `edits` changed by its function."""
    raw = copy.deepcopy(raw)
    for name, edit in edits.items():
        edit(next(s for s in raw["stages"] if s["name"] == name.replace("_", "-")))
    return validate_config(raw, "demo")


def test_the_demo_branches_one_experiment_into_a_teacher_and_three_students():
    cfg = load_config(DEMO)
    by = {s.name: s for s in cfg.stages}
    assert by["student-pretrain"].parent == "base" and by["student-pretrain"].init == "micro"
    assert {by[n].parent for n in ("student-synthetic", "student-traces", "student-logits")} == {"student-sft"}
    assert by["student-traces"].data.blend_config.sources[0].teacher.model == "reasoning"
    assert by["student-logits"].teacher.model == "reasoning" and by["reasoning-lora"].peft.r == 16
    steps = {by[n].trainer.max_steps for n in ("student-synthetic", "student-traces", "student-logits")}
    assert len(steps) == 1  # equal steps: the comparison the demo exists for


def test_the_demos_teacher_is_the_defaults_first_three_stages():
    """The demo reuses the default run's teacher from the same storage; when the default moves on
    and the demo does not, it silently trains a teacher of its own (it had drifted once)."""
    demo, default = load_config(DEMO), load_config(CONFIG_DIR / "default.yaml")
    assert demo.model == default.model and demo.tokenizer == default.tokenizer and demo.seed == default.seed
    assert demo.evaluation == default.evaluation  # the teacher's evaluations are reused too
    assert demo.stages[:3] == default.stages[:3]


def test_a_distill_teacher_must_share_the_think_tokens(demo):
    with pytest.raises(ConfigError, match="the teacher's tokenizer has <think> and </think> and this stage's does not"
                                          ".*set add_think_tokens: true"):
        _check(demo, student_logits=lambda s: s.pop("add_think_tokens"))


def test_a_student_gaining_think_tokens_needs_forward_kl(demo):
    """At beta > 0 the new <think> rows (probability ~0) get no gradient: the student never opens a block."""
    with pytest.raises(ConfigError, match=r"trainer.beta=0.5 .*add_think_tokens.*no gradient.*set trainer.beta: 0"):
        _check(demo, student_logits=lambda s: s["trainer"].update(beta=0.5))
    with pytest.raises(ConfigError, match=r"trainer.beta=unset \(TRL's default, 0.5\) with add_think_tokens"):
        _check(demo, student_logits=lambda s: s["trainer"].pop("beta"))

    def no_new_tokens(stage):  # a teacher without <think>: the JSD at beta 0.5 is fine
        stage.pop("add_think_tokens")
        stage["teacher"]["model"] = "student-sft"
        stage["trainer"]["beta"] = 0.5
    _check(demo, student_logits=no_new_tokens)


def test_teachers_and_parents_must_be_earlier_stages(demo):
    with pytest.raises(ConfigError, match=r"stages.1 \(sft\): parent = 'reasoning' is not an earlier stage; give one "
                                          "of: base, pretrain"):
        _check(demo, sft=lambda s: s.update(parent="reasoning"))
    with pytest.raises(ConfigError, match="teacher.model = 'student-logits' is this stage; a teacher must be an "
                                          "earlier stage"):
        _check(demo, student_logits=lambda s: s["teacher"].update(model="student-logits"))
    with pytest.raises(ConfigError, match="data.blend.sources.0.teacher.model = 'student-logits' runs after this one"):
        _check(demo, student_traces=lambda s: s["data"]["blend"]["sources"][0]["teacher"].update(
            model="student-logits"))
    with pytest.raises(ConfigError, match="a stage may not be named 'base'"):
        _check(demo, sft=lambda s: s.update(name="base"))


def test_kind_sections_are_refused_where_the_kind_does_not_read_them(demo):
    with pytest.raises(ConfigError, match="teacher applies to distill stages, not to a sft stage; remove it"):
        _check(demo, sft=lambda s: s.update(teacher={"model": "pretrain"}))
    with pytest.raises(ConfigError, match="a distill stage needs a teacher"):
        _check(demo, student_logits=lambda s: s.pop("teacher"))


def test_a_peft_section_on_a_kind_whose_trainer_cannot_take_it_is_refused(demo):
    plain = StageKind(name="plain_lm", summary="a kind without LoRA", schema="chat", trl_config=sft.trl_config,
                      train_loop=sft.train_loop_per_worker, tokenize_steps=sft.tokenize_steps,
                      prepare_tokenizer=sft.prepare_tokenizer, packing="chat", curves=(LOSS,))
    registry.register(plain)
    try:
        with pytest.raises(ConfigError, match="peft applies to .*sft.* stages, not to a plain_lm stage; remove it"):
            _check(demo, reasoning_lora=lambda s: s.update(kind="plain_lm"))
    finally:
        registry.unregister("plain_lm")


def test_peft_errors_name_the_field_before_training(demo):
    with pytest.raises(ConfigError, match="peft.target_modules names 'qproj', which matches no module of the tiny "
                                          "preset; its linear modules are down_proj, gate_proj, k_proj, lm_head, "
                                          "o_proj, q_proj, up_proj, v_proj"):
        _check(demo, reasoning_lora=lambda s: s["peft"].update(target_modules=["q_proj", "qproj"]))
    with pytest.raises(ConfigError, match="init: micro gives it freshly initialised weights; remove peft"):
        _check(demo, student_pretrain=lambda s: s.update(peft={"r": 4}))
    with pytest.raises(ConfigError, match="starts from the base, a tiny model initialised from scratch"):
        _check(demo, pretrain=lambda s: s.update(peft={"r": 4}))
    with pytest.raises(ConfigError, match="peft with deepspeed.zero_stage 3"):
        _check(demo, reasoning_lora=lambda s: s.update(deepspeed={"zero_stage": 3}))
    with pytest.raises(ConfigError, match="peft.rank is not a LoRA setting"):
        _check(demo, reasoning_lora=lambda s: s.update(peft={"rank": 4}))
    with pytest.raises(ConfigError, match="peft.task_type is set by the platform"):
        _check(demo, reasoning_lora=lambda s: s.update(peft={"task_type": "SEQ_CLS"}))


def test_trl_lora_names_mean_peft_fields():
    p = PeftSection.model_validate({"lora_r": 8, "lora_target_modules": ["q_proj"], "use_rslora": True})
    assert p.to_peft() == {"r": 8, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": ["q_proj"],
                           "use_rslora": True}
    with pytest.raises(ValueError, match="peft.lora_r is TRL's name for peft.r; give one of them"):
        PeftSection.model_validate({"lora_r": 8, "r": 4})


def test_target_modules_match_as_peft_matches_them():
    names = {"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj", "lm_head"}
    assert unmatched_targets(["q_proj", "mlp.up_proj", "lm_head"], names) == []
    assert unmatched_targets(["proj"], names) == ["proj"]  # a suffix must be whole dotted parts
    assert unmatched_targets(r".*\.q_proj", names) == [] and unmatched_targets("q_proj", names) == ["q_proj"]
    assert unmatched_targets("all-linear", names) == [] and unmatched_targets(None, names) == []


def test_teacher_sources_are_checked_with_the_config(demo):
    src = lambda s: s["data"]["blend"]["sources"][0]["teacher"]  # noqa: E731
    with pytest.raises(ConfigError, match="a teacher source answers prompt rows, but this source makes chat rows; "
                                          "use 'prompts'"):
        _check(demo, student_traces=lambda s: src(s).update(prompts=[{"synthetic": "chat"}]))
    with pytest.raises(ConfigError, match="num_samples=4 at temperature 0: greedy decoding"):
        _check(demo, student_traces=lambda s: src(s).update(temperature=0))
    with pytest.raises(ConfigError, match="a dpo stage .* trains on preference rows, but this teacher makes chat "
                                          "rows; set teacher.pairs: true"):
        _check(demo, student_traces=lambda s: s.update(kind="dpo", data={"blend": s["data"]["blend"]}))
    with pytest.raises(ConfigError, match="trains on reasoning rows, but this teacher makes preference rows; remove "
                                          "teacher.pairs"):
        _check(demo, student_traces=lambda s: src(s).update(pairs=True, filters={}))
    with pytest.raises(ConfigError, match="pairs puts a prompt's wrong samples on the rejected side, and "
                                          "filters.correct drops them; remove filters.correct"):
        _check(demo, student_traces=lambda s: src(s).update(pairs=True))
    with pytest.raises(ConfigError, match="num_samples=1 gives one; set num_samples >= 2"):
        _check(demo, student_traces=lambda s: src(s).update(pairs=True, num_samples=1, filters={}))
    with pytest.raises(ConfigError, match="entries caps rows read"):
        _check(demo, student_traces=lambda s: s["data"]["blend"]["sources"][0].update(entries=10))
    with pytest.raises(ConfigError, match="the teacher cannot be loaded: .*nope.gguf: no such file"):
        _check(demo, student_traces=lambda s: src(s).update(model="nope.gguf"))


def test_the_filters_name_why_a_sample_is_dropped():
    good = "<think>\n3 + 4 = 7\n</think>\nThe answer is 7."
    every = TeacherFilters(correct=True, well_formed=True, max_tokens=20)
    assert judge(good, "7", 12, True, every) == ""
    assert judge(good, "8", 12, True, every) == "teacher_wrong"
    assert judge("The answer is 7.", "7", 5, True, every) == "teacher_malformed"
    assert judge(good, "7", 21, True, every) == "teacher_too_long"
    assert judge(good, "7", 64, False, every) == "teacher_unfinished"
    assert judge("The answer is 8.", "7", 5, True, TeacherFilters()) == ""  # no filter but finished: kept


def test_pairs_use_each_sample_once_in_sampling_order():
    assert pair_up([0, 2], [1, 3]) == ([(0, 1), (2, 3)], [])
    assert pair_up([0, 1, 3], [2]) == ([(0, 2)], [1, 3])  # the surplus right ones find no partner
    assert pair_up([], [0, 1]) == ([], [0, 1]) and pair_up([0, 1], []) == ([], [0, 1])


def test_pairing_changes_a_teacher_blends_key_and_leaves_the_keys_made_before():
    from tinyreason.config.sections import BlendConfig, SourceConfig
    from tinyreason.data.blend import blend_key

    def source(**teacher):
        return SourceConfig(teacher={"model": "reasoning", "prompts": [{"synthetic": "prompts"}], "num_samples": 4,
                                     **teacher})

    assert "pairs" not in source().model_dump(mode="json")["teacher"]  # as if the field did not exist
    key = lambda **t: blend_key(BlendConfig(sources=[source(**t)]), "preference", 0)  # noqa: E731
    assert key() == key(pairs=False) != key(pairs=True)


def test_sweep_points_address_the_peft_section():
    assert section_of("peft.r") == ("peft", "r") and section_of("learning_rate") == ("trainer", "learning_rate")
    sweep, cfg = load_sweep(CONFIG_DIR / "sweeps" / "distill-lora-r-lr.yaml")
    stage = apply_point(cfg.stage(sweep.stage), {"peft.r": 4, "learning_rate": 2e-3})
    assert stage.peft.r == 4 and stage.trainer.learning_rate == 2e-3 and stage.peft.target_modules == "all-linear"
    with pytest.raises(ValueError, match="stage sft has no peft section to vary r in"):
        apply_point(cfg.stage("sft"), {"peft.r": 4})


def test_a_peft_key_on_a_stage_without_peft_fails_when_the_sweep_loads(tmp_path):
    raw = {"name": "t", "curriculum": "distill-demo.yaml", "stage": "reasoning", "space": {"peft.r": {"grid": [4]}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="space.peft.r: stage reasoning has no peft section"):
        load_sweep(tmp_path / "s.yaml")


def test_the_card_reports_what_the_teacher_made_and_kept():
    source = {"source": "teacher:reasoning", "subset": "", "split": "train", "requested": None, "read": 40,
              "kept": 12, "rejected": {"teacher_wrong": 25, "teacher_malformed": 3}, "decontaminated": 0,
              "share": 1.0, "columns": []}
    manifest = {"name": "traces", "schema": "reasoning", "key": "k", "rows": 12, "content_hash": "h",
                "sources": [source], "rejected_total": 28, "decontaminated_total": 0, "decontamination": None,
                "teachers": [{"source": 0, "model": "reasoning", "key": "abc", "prompts": {"rows": 10},
                              "num_samples": 4, "temperature": 0.7, "generated": 40, "tokens": 1200,
                              "tokens_per_s": 300.0, "tokens_per_actor_s": 450.0, "actors": {"a": 20, "b": 20}}]}
    card = render_card(manifest)
    assert "## Teacher generation" in card
    assert "| 0 | reasoning | `abc` | 10 | 4 | 0.7 | 40 | teacher_malformed: 3, teacher_wrong: 25 | 12 |" in card
    assert "`teacher_wrong` (25): The teacher's final answer does not match" in card


def test_references_are_read_in_order_stage_gguf_dir_hub(tmp_path):
    assert refs.kind_of("reasoning", {"reasoning"}) == refs.STAGE
    assert refs.kind_of("x.gguf", set()) == refs.GGUF
    assert refs.kind_of(str(tmp_path), set()) == refs.DIR and refs.kind_of("./m", set()) == refs.DIR
    assert refs.kind_of("HuggingFaceTB/SmolLM2-135M-Instruct", set()) == refs.HUB
    (tmp_path / "a.txt").write_text("1")
    key = refs.dir_key(tmp_path)
    assert refs.dir_key(tmp_path) == key
    (tmp_path / "a.txt").write_text("2")
    assert refs.dir_key(tmp_path) != key  # new content, new teacher key, new traces


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from tinyreason.data import synthetic
    from tinyreason.model.tokenizer import add_think_tokens, prepare_chat_tokenizer, train_bpe

    tok = prepare_chat_tokenizer(train_bpe((r["text"] for r in synthetic.pretrain_rows(300, 0)), 400,
                                           tmp_path_factory.mktemp("tok")))
    add_think_tokens(tok)
    return tok


def test_a_completion_row_masks_everything_but_the_final_answer(tok):
    from tinyreason.train.distill import completion_row

    messages = [{"role": "user", "content": "Is 3 bigger than 2?"},
                {"role": "assistant", "content": "The answer is yes."}]
    row = completion_row(tok, messages, 128)
    prompt = tok.apply_chat_template(messages[:1], add_generation_prompt=True, tokenize=True, return_dict=True)
    n = len(prompt["input_ids"])
    assert row["input_ids"][:n] == list(prompt["input_ids"]) and row["completion_mask"] == [0] * n + [1] * (
        len(row["input_ids"]) - n)
    assert tok.decode([t for t, m in zip(row["input_ids"], row["completion_mask"]) if m]).startswith("The answer is")
    assert completion_row(tok, messages, n) is None  # no room left for the answer
    assert len(completion_row(tok, messages, n + 3)["input_ids"]) == n + 3


def test_token_kl_is_zero_against_itself_and_positive_against_another_model(tok):
    import torch

    from tinyreason.model.presets import init_model
    from tinyreason.train.distill import heldout_rows, token_kl

    rows = heldout_rows(tok, 4, 128)
    assert len(rows) == 4 and all(sum(r["completion_mask"]) > 5 for r in rows)
    a, b = init_model("micro", tok, seed=0).eval(), init_model("micro", tok, seed=1).eval()
    with torch.no_grad():
        assert token_kl(a, a, rows) == pytest.approx(0.0, abs=1e-6)
        assert token_kl(a, b, rows) > 0


def test_a_student_retrained_because_its_teacher_changed_says_so():
    from tinyreason.curriculum import StageOutcome, why_trained

    config = {"trainer": {"learning_rate": 1e-3}}
    previous = {"config": config, "blend": "b1", "parent": "p1", "inputs": {"teacher": "t1"}}
    manifest = {"config": config, "blend": {"key": "b1"}, "parent": {"key": "p1", "name": "student-sft"},
                "inputs": {"teacher": {"name": "reasoning", "path": "x", "key": "t2"}}}
    assert why_trained(previous, StageOutcome(1, None, None, manifest, False)) == "its teacher changed"
