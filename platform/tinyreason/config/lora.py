"""The `peft:` stage section: LoRA on a stage's TRL trainer, merged into the model at export.

Written with peft's own `LoraConfig` names (`r`, `lora_alpha`, `lora_dropout`,
`target_modules`, and any other LoraConfig field such as `use_rslora`), or with TRL's
`ModelConfig` names (`lora_r`, `lora_target_modules`, ...), which mean the same fields.
Whether a module name exists is checked against the model the stage starts from
(config/references.py); which kinds take the section is each kind's `sections`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# TRL's ModelConfig names (trl/trainer/model_config.py, get_peft_config) -> peft's LoraConfig names
TRL_NAMES = {"lora_r": "r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
             "lora_target_modules": "target_modules", "lora_target_parameters": "target_parameters",
             "lora_modules_to_save": "modules_to_save"}
# Set by the platform: the task is causal LM, and the tokens a stage adds are made trainable
PLATFORM_OWNED = frozenset({"task_type", "peft_type", "base_model_name_or_path", "revision", "inference_mode"})
ALL_LINEAR = "all-linear"  # peft's shorthand: every linear layer but the output head


class PeftSection(BaseModel):
    """LoRA settings in peft's names; typed where the platform reads them, the rest checked
    against peft's LoraConfig."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    r: int = Field(16, ge=1)  # TRL's lora_r default
    lora_alpha: float = Field(32, gt=0)  # the adapter's scale is lora_alpha / r
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    # module names (suffixes, as peft matches them), a regex string, or "all-linear"; None: peft's
    # default for the architecture (q_proj and v_proj for Llama)
    target_modules: list[str] | str | None = None

    @model_validator(mode="before")
    @classmethod
    def _trl_names(cls, data: Any):
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for trl_name, name in TRL_NAMES.items():
            if trl_name in out and trl_name != name:
                if name in out:
                    raise ValueError(f"peft.{trl_name} is TRL's name for peft.{name}; give one of them")
                out[name] = out.pop(trl_name)
        return out

    @model_validator(mode="after")
    def _lora_fields(self):
        extra = set(self.model_extra or {})
        owned = sorted(extra & PLATFORM_OWNED)
        if owned:
            raise ValueError(f"peft.{owned[0]} is set by the platform (a causal-LM LoRA adapter); remove it")
        fields = lora_fields()
        unknown = sorted(extra - fields)
        if unknown:
            close = difflib.get_close_matches(unknown[0], fields | set(TRL_NAMES), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"peft.{unknown[0]} is not a LoRA setting (peft's LoraConfig or TRL's lora_* "
                             f"names){hint}")
        return self

    def to_peft(self) -> dict[str, Any]:
        """LoraConfig keyword arguments."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


@functools.cache
def lora_fields() -> frozenset[str]:
    from peft import LoraConfig  # heavy (peft imports torch and transformers): only when a peft section is read

    return frozenset(f.name for f in dataclasses.fields(LoraConfig))


def unmatched_targets(target_modules: list[str] | str | None, module_names: set[str]) -> list[str]:
    """The entries of target_modules that match no module, as peft matches them: a list entry
    is a module name or the last dotted part(s) of one; a string is a regex over whole names."""
    if target_modules is None or target_modules == ALL_LINEAR:
        return []
    if isinstance(target_modules, str):
        return [] if any(re.fullmatch(target_modules, n) for n in module_names) else [target_modules]
    return [t for t in target_modules if not any(n == t or n.endswith("." + t) for n in module_names)]


def leaf_names(module_names: set[str], types: dict[str, str] | None = None, kind: str = "Linear") -> list[str]:
    """The distinct last parts of module names (of `kind` modules when types are given): what a
    target_modules list usually holds (q_proj, v_proj, ...)."""
    names = [n for n in module_names if types is None or types.get(n) == kind]
    return sorted({n.rsplit(".", 1)[-1] for n in names})


def check_targets(target_modules, module_types: dict[str, str], at: str, what: str) -> None:
    """ValueError naming the first target module that matches no module of the model, with the
    model's linear module names to pick from."""
    missing = unmatched_targets(target_modules, set(module_types))
    if missing:
        raise ValueError(f"{at}: peft.target_modules names {missing[0]!r}, which matches no module of {what}; its "
                         f"linear modules are {', '.join(leaf_names(set(module_types), module_types))}, or give "
                         f"{ALL_LINEAR!r}")
