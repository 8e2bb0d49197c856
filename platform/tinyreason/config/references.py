"""What a stage reads besides its own rows, checked against the whole experiment before
anything runs: the model it starts from (`parent`, `init`), the models it names as
teachers, and the modules its LoRA adapter targets.

`check` holds the rules that need no files (run whenever an ExperimentConfig is built);
`check_files` the ones that read local models and tokenizers (config/loading.py). What
neither can know here (a hub model, a tokenizer trained during the run) is checked again by
the driver before the stage's workers start (stage.py, the kinds' `preflight`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tinyreason import refs
from tinyreason.config.lora import check_targets
from tinyreason.config.sections import BlendConfig
from tinyreason.model import presets
from tinyreason.train import registry

if TYPE_CHECKING:
    from tinyreason.config.experiment import ExperimentConfig, StageConfig


def parent_index(cfg: ExperimentConfig, i: int) -> int | None:
    """The index of the stage stage i starts from; None for the base model."""
    stage = cfg.stages[i]
    if stage.parent is None:
        return i - 1 if i > 0 else None
    if stage.parent == refs.BASE:
        return None
    return [s.name for s in cfg.stages].index(stage.parent)


def teacher_refs(stage: StageConfig) -> list[tuple[str, str]]:
    """(field, reference) of every teacher a stage names: its `teacher:` section and its blend's
    teacher sources."""
    out = [("teacher.model", stage.teacher.model)] if stage.teacher is not None else []
    blend = stage.data.blend
    if isinstance(blend, BlendConfig):  # a blend file not yet read in has no sources to look at
        out += [(f"data.blend.sources.{j}.teacher.model", s.teacher.model)
                for j, s in enumerate(blend.sources) if s.teacher is not None]
    return out


def check(cfg: ExperimentConfig) -> None:
    names = [s.name for s in cfg.stages]
    if refs.BASE in names:
        raise ValueError(f"a stage may not be named {refs.BASE!r}: `parent: {refs.BASE}` names the experiment's "
                         "base model; rename the stage")
    for i, stage in enumerate(cfg.stages):
        at = f"stages.{i} ({stage.name})"
        if stage.parent is not None and stage.parent != refs.BASE and stage.parent not in names[:i]:
            raise ValueError(f"{at}: parent = {stage.parent!r} is not an earlier stage; give one of: "
                             f"{', '.join([refs.BASE, *names[:i]])}")
        for field, ref in teacher_refs(stage):
            if ref in names and names.index(ref) >= i:
                when = "is this stage" if names.index(ref) == i else "runs after this one"
                raise ValueError(f"{at}: {field} = {ref!r} {when}; a teacher must be an earlier stage "
                                 f"({', '.join(names[:i]) or 'none'}), a model dir, a .gguf file or a hub id")
        if stage.peft is not None:
            _check_peft(cfg, i, at)
        if stage.teacher is not None:
            _check_think_tokens(cfg, i, at)


def fresh_start(cfg: ExperimentConfig, i: int) -> str | None:
    """Why stage i starts from untrained weights, or None when it starts from trained ones."""
    stage = cfg.stages[i]
    if stage.init is not None:
        return f"init: {stage.init} gives it freshly initialised weights"
    if parent_index(cfg, i) is None and presets.weights_source(cfg.model.preset, cfg.model.name_or_path) is None:
        return f"it starts from the base, a {cfg.model.preset} model initialised from scratch"
    return None


def architecture(cfg: ExperimentConfig, i: int) -> tuple[str | None, str | None] | None:
    """(preset, config dir) of the model stage i starts from; None when only its files tell (a hub
    model), and the driver checks it before the stage trains."""
    stage = cfg.stages[i]
    if stage.init is not None:
        return stage.init, None
    j = parent_index(cfg, i)
    if j is not None:
        return architecture(cfg, j)  # training keeps the parent's architecture
    source = presets.weights_source(cfg.model.preset, cfg.model.name_or_path)
    if source is None:
        return cfg.model.preset, None
    if refs.looks_local(source) and (Path(source).expanduser() / "config.json").is_file():
        return None, str(Path(source).expanduser())
    return None


def _check_peft(cfg: ExperimentConfig, i: int, at: str) -> None:
    stage = cfg.stages[i]
    if stage.deepspeed.enabled and stage.deepspeed.zero_stage == 3:
        raise ValueError(f"{at}: peft with deepspeed.zero_stage 3: the adapter is merged into whole weights on "
                         "rank 0 at export, and ZeRO-3 shards them across ranks; use zero_stage 2 (an adapter's "
                         "optimizer state is small)")
    why = fresh_start(cfg, i)
    if why:
        raise ValueError(f"{at}: peft trains a low-rank adapter on top of trained weights, and {why}; remove peft "
                         "(every weight must learn) or start the stage from a trained model")
    arch = architecture(cfg, i)
    if arch is not None:
        preset, config_dir = arch
        check_targets(stage.peft.target_modules, presets.module_types(preset, config_dir), at,
                      f"the {preset} preset" if preset else config_dir)


def think_tokens(cfg: ExperimentConfig, i: int | None) -> bool:
    """Whether the tokenizer of stage i (None: the base) has <think> tokens added along its chain."""
    if i is None:
        return False
    return cfg.stages[i].think_tokens or think_tokens(cfg, parent_index(cfg, i))


def _check_think_tokens(cfg: ExperimentConfig, i: int, at: str) -> None:
    """A teacher stage of the same experiment shares the student's base tokenizer; the two differ
    only by the <think> tokens their chains add. Known here for a BPE trained by the run (it
    has none); any other base is compared by its files (check_files) and before training."""
    ref, names = cfg.stages[i].teacher.model, [s.name for s in cfg.stages]
    trained_here = cfg.tokenizer.path is None and presets.weights_source(cfg.model.preset,
                                                                         cfg.model.name_or_path) is None
    if ref not in names or not trained_here:
        return
    teacher, student = think_tokens(cfg, names.index(ref)), think_tokens(cfg, i)
    if teacher != student:
        has, lacks = ("the teacher's", "this stage's") if teacher else ("this stage's", "the teacher's")
        raise ValueError(f"{at}: teacher.model = {ref!r}: {has} tokenizer has <think> and </think> and {lacks} does "
                         "not; distillation compares whole next-token distributions, so both need one vocabulary; "
                         f"set add_think_tokens: {str(teacher).lower()} on this stage")


def check_files(cfg: ExperimentConfig) -> None:
    """Teachers given as local paths must load; a distill teacher's tokenizer must equal the
    student's, when the student's comes from a local dir. ValueError naming the field."""
    names = [s.name for s in cfg.stages]
    for i, stage in enumerate(cfg.stages):
        for field, ref in teacher_refs(stage):
            kind = refs.kind_of(ref, names)
            if kind in (refs.GGUF, refs.DIR):
                try:
                    refs.check_local(ref)
                except ValueError as e:
                    raise ValueError(f"stages.{i} ({stage.name}): {field} = {ref!r}: the teacher cannot be loaded: "
                                     f"{e}") from None
        if stage.teacher is not None and refs.kind_of(stage.teacher.model, names) == refs.DIR:
            _compare_tokenizers(cfg, i, stage.teacher.model)


def _compare_tokenizers(cfg: ExperimentConfig, i: int, teacher_dir: str) -> None:
    base = cfg.tokenizer.path or presets.weights_source(cfg.model.preset, cfg.model.name_or_path)
    if base is None or not refs.looks_local(base):
        return  # trained by the run, or on the hub: compared before the stage trains
    # on use: transformers (~3 s), and only for a distill stage whose teacher is a local dir
    from tinyreason.model.tokenizer import load_tokenizer

    chain, j = [], i
    while j is not None:
        chain.append(cfg.stages[j])
        j = parent_index(cfg, j)
    student = load_tokenizer(str(Path(base).expanduser()), cfg.model.trust_remote_code)
    for stage in reversed(chain):  # the student's tokenizer as each stage of its chain prepares it
        student = registry.get(stage.kind).prepare_tokenizer(student, stage)
    why = refs.tokenizer_difference(load_tokenizer(str(Path(teacher_dir).expanduser())), student)
    if why:
        raise ValueError(f"stages.{i} ({cfg.stages[i].name}): teacher.model = {teacher_dir!r}: the teacher and the "
                         f"student do not share a tokenizer ({why}); distillation compares whole next-token "
                         "distributions, so give a teacher trained with the student's tokenizer")
