"""YAML in, a validated ExperimentConfig out: `--set` overrides, blend files read in,
files and dirs checked before any work starts, errors phrased for the person who wrote it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tinyreason.config import references
from tinyreason.config.base import CONFIG_DIR, ConfigError, format_errors, read_yaml, resolve_path
from tinyreason.config.experiment import ExperimentConfig
from tinyreason.config.sections import BlendConfig, CostConfig, ModelConfig, SourceConfig
from tinyreason.cost import check_prices, cluster_node_types
from tinyreason.data import schema
from tinyreason.data.sources import SYNTHETIC_SCHEMA, DataError, expand_files
from tinyreason.model import gguf, presets, templates
from tinyreason.storage import Storage, redact
from tinyreason.train import registry

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def load_blend(ref: str) -> BlendConfig:
    path = resolve_path(ref)
    if not path.exists():
        raise ConfigError(f"blend {ref!r} not found (looked in ., configs/); give a path to a blend YAML or inline sources")
    try:
        return BlendConfig.model_validate({**read_yaml(path), "file": ref})
    except ValidationError as e:
        raise ConfigError(format_errors(e, prefix=f"blend {ref}")) from None


def parse_value(text: str) -> Any:
    """`--set` values are YAML scalars: 1e-4, true, null, [1, 2] all mean what they look like."""
    value = yaml.safe_load(text)
    # YAML 1.1 reads 1e-4 as a string (no dot); a number is what anyone means here.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_override(raw: dict, assignment: str) -> None:
    """Apply `a.b.c=value`; list items are addressed by index or, for stages, by name."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r} needs the form key.path=value, e.g. stages.dpo.trainer.beta=0.2")
    key, text = assignment.split("=", 1)
    parts = key.strip().split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        node = _step(node, part, ".".join(parts[: i + 1]))
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, key)] = parse_value(text)
    else:
        node[last] = parse_value(text)


def _list_index(node: list, part: str, path: str) -> int:
    if part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
        return int(part)
    for i, item in enumerate(node):
        if isinstance(item, dict) and item.get("name") == part:
            return i
    names = [item.get("name") for item in node if isinstance(item, dict)]
    raise ConfigError(f"--set {path}: no item {part!r}; use an index 0..{len(node) - 1} or a name in {names}")


def _step(node: Any, part: str, path: str) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, part, path)]
    if not isinstance(node, dict):
        raise ConfigError(f"--set {path}: cannot descend into a {type(node).__name__}")
    if part not in node or node[part] is None:
        node[part] = {}
    return node[part]


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                stages: list[str] | None = None) -> ExperimentConfig:
    """Read YAML, apply `--set` overrides, keep only `stages` (names, in the order given; None:
    all), validate everything (blend files included)."""
    path = Path(path) if path else CONFIG_DIR / "default.yaml"
    raw = read_yaml(path if path.exists() else resolve_path(str(path)))
    for assignment in overrides or []:
        apply_override(raw, assignment)
    if stages is not None:
        raw = pick_stages(raw, stages, f"--stages {','.join(stages)}", str(path))
    return validate_config(raw, source=str(path))


def pick_stages(raw: dict, names: list[str], who: str, source: str) -> dict:
    """`raw` with only the named stages, in the order given: each trains from the one before it
    (the first from the model), as in any curriculum. The stage dicts are `raw`'s own, not
    copies. Unknown names are an error listing the stages there are, before anything runs."""
    if not names:
        raise ConfigError(f"{who} names no stage; name at least one")
    by_name = {s.get("name"): s for s in raw.get("stages") or [] if isinstance(s, dict)}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ConfigError(f"{who} names stage(s) {missing} that {source} does not have; its stages are: "
                          f"{', '.join(map(str, by_name))}")
    return {**raw, "stages": [by_name[n] for n in names]}


def validate_config(raw: dict, source: str = "config") -> ExperimentConfig:
    raw = _with_blends(copy.deepcopy(raw))
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_errors(e, prefix=source)) from None
    _check_model_path(cfg.model, source)
    _check_cost(cfg.cost, source)
    _check_gguf_source(cfg, source)
    _check_tokenizer_path(cfg, source)
    _check_chat_template(cfg, source)
    for i, stage in enumerate(cfg.stages):
        want = registry.get(stage.kind).schema
        for j, src in enumerate(stage.data.blend_config.sources):
            reader = f"a {stage.kind} stage ({stage.name}) trains on"
            _check_source(src, want, f"stages.{i}.data.blend.sources.{j}", reader, source)
            if src.revision is not None and src.hub and Path(src.hub).expanduser().is_dir():
                raise ConfigError(f"{source}: stages.{i}.data.blend.sources.{j}.revision = {src.revision!r}: hub "
                                  f"{src.hub!r} is a local directory, read as it is (by content); remove revision")
            for k, prompt in enumerate(src.teacher.prompts if src.teacher else []):
                _check_source(prompt, "prompt", f"stages.{i}.data.blend.sources.{j}.teacher.prompts.{k}",
                              "a teacher source answers", source)
    try:
        references.check_files(cfg)
    except ValueError as e:
        raise ConfigError(f"{source} is invalid:\n  {e}") from None
    return cfg


def _check_source(src: SourceConfig, want: str, where: str, reader: str, source: str) -> None:
    """Its files exist, and a synthetic generator or a teacher makes rows of the schema wanted."""
    if src.files:
        _check_files(src, f"{source}: {where}.files")
    if src.teacher:  # a teacher's samples are chat rows, or preference rows when it pairs them
        made, field, maker = ("preference" if src.teacher.pairs else "chat"), "teacher", "teacher"
    else:
        made, field, maker = SYNTHETIC_SCHEMA.get(src.synthetic), f"synthetic = {src.synthetic!r}", "source"
    if made and schema.family(made) != schema.family(want):
        raise ConfigError(f"{source} is invalid:\n  {where}.{field}: {reader} {want} rows, but this {maker} makes "
                          f"{made} rows; {_schema_fix(src, want)}")


def _schema_fix(src: SourceConfig, want: str) -> str:
    """What to change so that the source makes the rows its stage wants."""
    if src.teacher is None:
        fits = [repr(g) for g, s in SYNTHETIC_SCHEMA.items() if schema.family(s) == schema.family(want)]
        return "use " + (" or ".join(fits) or "another source")
    if schema.family(want) == "preference":
        return "set teacher.pairs: true (a right sample chosen over a wrong one of the same prompt)"
    return "remove teacher.pairs" if src.teacher.pairs else f"use a source of {want} rows"


def _with_blends(raw: dict) -> dict:
    """Blend file references read in, so the stage config (and its cache key) holds the blend itself."""
    for stage in raw.get("stages") or []:
        data = stage.get("data") if isinstance(stage, dict) else None
        if isinstance(data, dict) and isinstance(data.get("blend"), str):
            data["blend"] = load_blend(data["blend"]).model_dump(exclude_none=True)
    return raw


def _check_cost(cost: CostConfig, source: str) -> None:
    """A price table names node types of the cluster file, each with a GPU or CPU count; so
    does the default node type."""
    if not cost.prices and cost.node_type is None:
        return
    path = resolve_path(cost.cluster)
    if not path.exists():
        raise ConfigError(f"{source}: cost.cluster = {cost.cluster!r}: no such file; cost.prices and cost.node_type "
                          "name node types of a Ray cluster launcher file (cluster.yaml in the repository root)")
    types = cluster_node_types(path)
    if cost.node_type is not None and cost.node_type not in types:
        raise ConfigError(f"{source} is invalid:\n  cost.node_type = {cost.node_type!r}: {cost.cluster} has no such node "
                          f"type; its node types are: {', '.join(types)}")
    try:
        check_prices(cost.prices, types, cost.cluster)
    except ValueError as e:
        raise ConfigError(f"{source} is invalid:\n  cost.prices = {cost.prices}: {e}") from None


def _check_files(src: SourceConfig, where: str) -> None:
    try:
        expand_files(src.files)
    except DataError as e:
        raise ConfigError(f"{where} = {src.files!r}: {e}") from None


def _looks_local(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~")) or Path(ref).expanduser().exists()


def _check_model_path(model: ModelConfig, source: str) -> None:
    """A local model dir must exist and hold safetensors weights (pickled .bin files are refused)."""
    ref = model.name_or_path
    if not ref or not _looks_local(ref) or gguf.is_gguf(ref):
        return  # a hub id: resolved when the base model loads; a GGUF file: _check_gguf_source
    path = Path(ref).expanduser()
    where = f"{source}: model.name_or_path = {ref!r}"
    if model.revision is not None:
        raise ConfigError(f"{source}: model.revision = {model.revision!r} pins a hub model, but {ref!r} is a local "
                          "path, read as it is; remove revision")
    if not path.is_dir():
        raise ConfigError(f"{where}: no such directory; give a model dir or a hub id like HuggingFaceTB/SmolLM2-135M")
    if not list(path.glob("*.safetensors")):
        hint = " (it has only pickle .bin weights, which are never loaded)" if list(path.glob("*.bin")) else ""
        raise ConfigError(f"{where}: no *.safetensors weights in it{hint}; re-save the model with "
                          "model.save_pretrained(dir) (safetensors is the default)")


def _check_gguf_source(cfg: ExperimentConfig, source: str) -> None:
    """A .gguf model source (model.name_or_path, or a GGUF preset) must be a whole GGUF of an
    architecture transformers de-quantizes, and carry a chat template when a chat stage uses
    its tokenizer. model/gguf.check reads the header only: 0.2 s for SmolLM2's 93 MB."""
    field = "model.name_or_path" if cfg.model.name_or_path else f"model.preset = {cfg.model.preset!r}"
    try:
        ref = presets.weights_source(cfg.model.preset, cfg.model.name_or_path)
        if not gguf.is_gguf(ref):
            return
        info = gguf.check(Path(ref).expanduser())
    except gguf.GGUFError as e:
        raise ConfigError(f"{source}: {field}: {e}") from None
    chat = next((s for s in cfg.stages if registry.get(s.kind).schema != "text"), None)
    if chat is not None and cfg.tokenizer.path is None and not info.has_chat_template:
        raise ConfigError(
            f"{source}: {field}: {info.path}: has no chat template (GGUF key tokenizer.chat_template), which the "
            f"{chat.kind} stage {chat.name!r} needs; fix: use the GGUF of an instruct model, or set tokenizer.path "
            "to a tokenizer dir with a chat template")


def _check_tokenizer_path(cfg: ExperimentConfig, source: str) -> None:
    """The tokenizer dir (tokenizer.path, else a local model dir) must hold a tokenizer (its chat
    template is checked by _check_chat_template)."""
    field, ref = ("tokenizer.path", cfg.tokenizer.path) if cfg.tokenizer.path else \
        ("model.name_or_path", cfg.model.name_or_path)
    if not ref or not _looks_local(ref) or (field == "model.name_or_path" and gguf.is_gguf(ref)):
        return  # a hub id; or a GGUF, whose tokenizer is read from the file (_check_gguf_source)
    path = Path(ref).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{source}: {field} = {ref!r}: no such directory; give a tokenizer dir or a hub id")
    if not any((path / f).exists() for f in TOKENIZER_FILES):
        raise ConfigError(f"{source}: {field} = {ref!r} has no tokenizer ({', '.join(TOKENIZER_FILES)}); save one "
                          "with tokenizer.save_pretrained(dir), or set tokenizer.path to a dir or hub id that has one")


def _check_chat_template(cfg: ExperimentConfig, source: str) -> None:
    """A pretrained model's own chat template must be of a family tinyreason knows, unless
    model.chat_template says otherwise: checked here for local dirs, before Ray starts (a hub
    model's when its first chat stage prepares its tokenizer)."""
    chat = [s for s in cfg.stages if schema.family(registry.get(s.kind).schema) != "text"]
    if not chat or cfg.model.chat_template is not None:
        return
    if presets.weights_source(cfg.model.preset, cfg.model.name_or_path) is None:
        return  # a from-scratch preset is born with tinyreason's ChatML
    field, ref = ("tokenizer.path", cfg.tokenizer.path) if cfg.tokenizer.path else \
        ("model.name_or_path", cfg.model.name_or_path)
    if not ref or not _looks_local(ref) or not Path(ref).expanduser().is_dir():
        return
    template = templates.saved_template(Path(ref).expanduser())
    if templates.family_of(template) is None:
        raise ConfigError(f"{source}: {field} = {ref!r} (stage {chat[0].name}, a {chat[0].kind} stage): "
                          f"{templates.unknown_family('the tokenizer', template)}")


def check_storage(path: str) -> Storage:
    """The storage, once a probe write proves it writable; fails before any work when it is not."""
    try:
        store = Storage(path)
        store.check_writable()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return store


def dump_config(cfg: ExperimentConfig) -> dict:
    """The config as written into run dirs and trackers: credentials in a storage URI redacted."""
    out = cfg.model_dump(mode="json", exclude_none=True)
    out["storage"]["path"] = redact(out["storage"]["path"])
    return out
