"""The chat settings (model.chat_template, model.system_prompt, data.overlong) are checked with
the config, before Ray starts: a local model whose template is of no known family fails naming
model.chat_template, and the settings enter the cache key of chat stages only."""

import pytest

from families import make_family
from tinyreason.config.base import ConfigError
from tinyreason.config.loading import validate_config
from tinyreason.config.sections import ModelConfig

UNKNOWN = ("{% for m in messages %}{{ '[' + m['role'] + '] ' + m['content'] + '</s>' }}{% endfor %}"
           "{% if add_generation_prompt %}{{ '[assistant] ' }}{% endif %}")


def _raw(model: dict, kind: str = "sft", **data) -> dict:
    synthetic = {"sft": "chat", "pretrain": "pretrain"}[kind]
    stage = {"name": "s", "kind": kind, "data": {"blend": {"sources": [{"synthetic": synthetic, "entries": 10}]},
                                                 **data}}
    return {"model": model, "stages": [stage]}


@pytest.fixture(scope="module")
def unknown_dir(tmp_path_factory):
    d = make_family("smollm2", tmp_path_factory.mktemp("unknown"))
    (d / "chat_template.jinja").write_text(UNKNOWN)
    return d


def test_a_local_model_of_an_unknown_family_fails_before_ray_naming_the_setting(unknown_dir):
    with pytest.raises(ConfigError) as err:
        validate_config(_raw({"preset": None, "name_or_path": str(unknown_dir)}))
    message = str(err.value)
    assert "model.name_or_path" in message and "stage s, a sft stage" in message
    assert "no family tinyreason knows" in message and "set model.chat_template: own" in message
    assert "\n" not in message


def test_own_chatml_or_a_pretrain_only_curriculum_need_no_known_family(unknown_dir):
    for setting in ("own", "chatml"):
        validate_config(_raw({"preset": None, "name_or_path": str(unknown_dir), "chat_template": setting}))
    validate_config(_raw({"preset": None, "name_or_path": str(unknown_dir)}, kind="pretrain"))


def test_a_known_familys_model_dir_passes(tmp_path):
    d = make_family("gemma3", tmp_path / "gemma3")
    validate_config(_raw({"preset": None, "name_or_path": str(d)}))


def test_a_template_setting_is_a_name_or_a_file(tmp_path):
    with pytest.raises(ConfigError, match=r"model.chat_template = 'chat-ml': not one of own, chatml nor a template"):
        validate_config(_raw({"preset": "micro", "chat_template": "chat-ml"}))
    path = tmp_path / "mine.jinja"
    path.write_text(UNKNOWN)
    cfg = validate_config(_raw({"preset": "micro", "chat_template": str(path), "system_prompt": "Be brief."}))
    assert cfg.model.chat_template_text() == UNKNOWN
    key = cfg.model.chat_key()
    assert key["system_prompt"] == "Be brief." and len(key["chat_template"]) == 64  # the file's content, hashed


def test_unset_chat_settings_leave_cache_keys_as_they_were():
    assert ModelConfig().chat_key() == {}


def test_overlong_is_drop_truncate_or_error():
    cfg = validate_config(_raw({"preset": "micro"}))
    assert cfg.stages[0].data.overlong == "drop"
    with pytest.raises(ConfigError, match="stages.0.data.overlong"):
        validate_config(_raw({"preset": "micro"}, overlong="cut"))


def test_chat_settings_enter_the_key_of_chat_stages_only():
    from types import SimpleNamespace

    from tinyreason.outputs import ModelRef
    from tinyreason.stage import keyed_parent

    parent = ModelRef("base", "/m", "/m", "k0")
    chat, pretrain = (validate_config(_raw({"preset": "micro", "system_prompt": "Be brief."}, kind=k)).stages[0]
                      for k in ("sft", "pretrain"))
    ctx = SimpleNamespace(cfg=SimpleNamespace(model=ModelConfig(preset="micro", system_prompt="Be brief.")))
    assert keyed_parent(ctx, pretrain, parent) == parent
    assert keyed_parent(ctx, chat, parent).key != "k0"
    ctx.cfg.model = ModelConfig(preset="micro")
    assert keyed_parent(ctx, chat, parent) == parent
