"""What every config module shares: strict models, the error type, and reading YAML.

Every error names the field (as a dotted path), the value, and what is allowed, so a
typo in stage 3 fails in a second instead of after two hours of stage 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_serializer

REPO_ROOT = Path(__file__).resolve().parents[3]
CONFIG_DIR = REPO_ROOT / "configs"


class ConfigError(ValueError):
    """A config problem, phrased for the person who wrote the config."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class KeyStable(Strict):
    """A section whose dump cache keys hash (blend and stage keys). The fields it gained after
    keys were first made are named in ADDED: a dump leaves each out while it holds its default,
    so every key made before the field existed stays valid, and setting it changes the key."""

    ADDED: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _without_added_defaults(self, handler):
        out = handler(self)
        for name in self.ADDED:
            if getattr(self, name) == type(self).model_fields[name].default:
                out.pop(name, None)
        return out


def read_yaml(path: Path) -> dict:
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


def resolve_path(ref: str) -> Path:
    """A config reference as given, or relative to configs/ or the repository root."""
    p = Path(ref)
    for cand in (p, CONFIG_DIR / p, REPO_ROOT / p):
        if cand.exists():
            return cand
    return CONFIG_DIR / p


def format_errors(err: ValidationError, prefix: str = "config") -> str:
    lines, errors = [], err.errors()
    for e in errors:
        parts = [str(x) for x in e["loc"] if not str(x).startswith("function-after")]
        if parts and parts[-1] == "str" and e["type"] == "string_type" and len(errors) > 1:
            continue  # the `str` side of a `str | Model` union (data.blend) given a mapping: the model's errors tell
        loc = ".".join(x for x in parts if not x[:1].isupper())  # union member tags, e.g. BlendConfig
        value = e.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc or '(top level)'} = {shown[:80]}: {msg}")
    return f"{prefix} is invalid:\n" + "\n".join(lines)
