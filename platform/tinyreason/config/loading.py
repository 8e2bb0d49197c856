"""YAML in, a validated ExperimentConfig out: `--set` overrides, files and dirs checked
before any work starts, errors phrased for the person who wrote the config."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tinyreason.config.experiment import (SCHEMA_OF_KIND, SYNTHETIC_SCHEMA, BlendConfig, ConfigError,
                                          ExperimentConfig, ModelConfig, SourceConfig)

REPO_ROOT = Path(__file__).resolve().parents[3]
CONFIG_DIR = REPO_ROOT / "configs"


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML (configs/ has examples)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}; fix the syntax at the line shown") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text; save it as UTF-8") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level, got {type(data).__name__}")
    return data


def _resolve_path(ref: str) -> Path:
    p = Path(ref)
    for cand in (p, CONFIG_DIR / p, REPO_ROOT / p):
        if cand.exists():
            return cand
    return CONFIG_DIR / p


def load_blend(ref: str) -> BlendConfig:
    path = _resolve_path(ref)
    if not path.exists():
        raise ConfigError(f"blend {ref!r} not found (looked in ., configs/); give a path to a blend YAML or inline sources")
    try:
        return BlendConfig.model_validate(_read_yaml(path))
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
        node = _step(node, part, ".".join(parts[: i + 1]), create=True)
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


def _step(node: Any, part: str, path: str, create: bool) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, part, path)]
    if not isinstance(node, dict):
        raise ConfigError(f"--set {path}: cannot descend into a {type(node).__name__}")
    if part not in node or node[part] is None:
        node[part] = {}
    return node[part]


def format_errors(err: ValidationError, prefix: str = "config") -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"] if not str(x).startswith("function-after"))
        value = e.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc or '(top level)'} = {shown[:80]}: {msg}")
    return f"{prefix} is invalid:\n" + "\n".join(lines)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read YAML, apply `--set` overrides, validate everything (blend files included)."""
    path = Path(path) if path else CONFIG_DIR / "default.yaml"
    raw = _read_yaml(path if path.exists() else _resolve_path(str(path)))
    for assignment in overrides or []:
        apply_override(raw, assignment)
    return validate_config(raw, source=str(path))


def validate_config(raw: dict, source: str = "config") -> ExperimentConfig:
    try:
        cfg = ExperimentConfig.model_validate(copy.deepcopy(raw))
    except ValidationError as e:
        raise ConfigError(format_errors(e, prefix=source)) from None
    _check_model_path(cfg.model, source)
    _check_tokenizer_path(cfg, source)
    for i, stage in enumerate(cfg.stages):
        blend = stage.data.resolved_blend()
        want = SCHEMA_OF_KIND[stage.kind]
        for j, src in enumerate(blend.sources):
            if src.files:
                _check_files(src, f"{source}: stages.{i}.data.blend.sources.{j}.files")
            if src.synthetic and SYNTHETIC_SCHEMA[src.synthetic] != want:
                raise ConfigError(
                    f"{source} is invalid:\n  stages.{i}.data.blend.sources.{j}.synthetic = {src.synthetic!r}: "
                    f"a {stage.kind} stage ({stage.name}) trains on {want} rows, but this source makes "
                    f"{SYNTHETIC_SCHEMA[src.synthetic]} rows; use "
                    + " or ".join(repr(k) for k, v in SYNTHETIC_SCHEMA.items() if v == want)
                )
    return cfg


def _check_files(src: SourceConfig, where: str) -> None:
    from tinyreason.data.sources import DataError, expand_files

    try:
        expand_files(src.files)
    except DataError as e:
        raise ConfigError(f"{where} = {src.files!r}: {e}") from None


def _looks_local(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~")) or Path(ref).expanduser().exists()


def _check_model_path(model: ModelConfig, source: str) -> None:
    """A local model dir must exist and hold safetensors weights (pickled .bin files are refused)."""
    ref = model.name_or_path
    if not ref or not _looks_local(ref):
        return  # a hub id: resolved when the base model loads
    path = Path(ref).expanduser()
    where = f"{source}: model.name_or_path = {ref!r}"
    if not path.is_dir():
        raise ConfigError(f"{where}: no such directory; give a model dir or a hub id like HuggingFaceTB/SmolLM2-135M")
    if not list(path.glob("*.safetensors")):
        hint = " (it has only pickle .bin weights, which are never loaded)" if list(path.glob("*.bin")) else ""
        raise ConfigError(f"{where}: no *.safetensors weights in it{hint}; re-save the model with "
                          "model.save_pretrained(dir) (safetensors is the default)")


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _check_tokenizer_path(cfg: ExperimentConfig, source: str) -> None:
    """The tokenizer dir (tokenizer.path, else a local model dir) must hold a tokenizer.

    A missing chat template is not an error: every chat stage installs tinyreason's ChatML
    template, which adds the `{% generation %}` markers assistant-only losses need.
    """
    field, ref = ("tokenizer.path", cfg.tokenizer.path) if cfg.tokenizer.path else \
        ("model.name_or_path", cfg.model.name_or_path)
    if not ref or not _looks_local(ref):
        return
    path = Path(ref).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{source}: {field} = {ref!r}: no such directory; give a tokenizer dir or a hub id")
    if not any((path / f).exists() for f in TOKENIZER_FILES):
        raise ConfigError(f"{source}: {field} = {ref!r} has no tokenizer ({', '.join(TOKENIZER_FILES)}); save one "
                          "with tokenizer.save_pretrained(dir), or set tokenizer.path to a dir or hub id that has one")


def check_storage(path: str) -> Path | str:
    """Fail before any work when the storage path cannot be written."""
    if "://" in path:
        # Object storage: a probe write now, not a traceback from Ray Train at the first checkpoint
        from tinyreason.storage import Storage

        try:
            Storage(path).check_writable()
        except ValueError as e:
            raise ConfigError(str(e)) from None
        return path
    p = Path(path).expanduser().resolve()
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"storage.path = {path!r} is not writable ({e.strerror}); choose a directory you can "
                          "write, e.g. --set storage.path=$HOME/tinyreason-runs") from None
    return p


def dump_config(cfg: ExperimentConfig) -> dict:
    """The config as written into run dirs and trackers: credentials in a storage URI redacted."""
    from tinyreason.storage import redact

    out = cfg.model_dump(mode="json", exclude_none=True)
    out["storage"]["path"] = redact(out["storage"]["path"])
    return out
