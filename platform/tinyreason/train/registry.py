"""The stage kinds: the one list the config, the blend builder, the launcher and the
reports consult. Built from the kind modules; tests and plug-ins may `register` more.
"""

from __future__ import annotations

from tinyreason.train import distill, dpo, grpo, pretrain, reasoning_sft, sft
from tinyreason.train.kind import StageKind

_KINDS: dict[str, StageKind] = {m.KIND.name: m.KIND for m in (pretrain, sft, reasoning_sft, dpo, grpo, distill)}


def names() -> tuple[str, ...]:
    return tuple(_KINDS)


def get(name: str) -> StageKind:
    if name not in _KINDS:
        raise ValueError(f"unknown stage kind {name!r}; the registered kinds are: {', '.join(_KINDS)}")
    return _KINDS[name]


def register(kind: StageKind, replace: bool = False) -> StageKind:
    """Add a kind (a plug-in or a test's); its module must be importable on every Ray worker."""
    if kind.name in _KINDS and not replace:
        raise ValueError(f"stage kind {kind.name!r} is already registered; pick another name")
    _KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    _KINDS.pop(name, None)
