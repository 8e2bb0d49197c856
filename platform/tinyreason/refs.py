"""Model references: how a config names a model other than a stage's parent (a distill stage's
teacher, a teacher blend source). One string, read in this order:

    an earlier stage's name    its export, keyed by its stage key
    a .gguf file               converted once to safetensors (model/gguf.py), keyed by its content
    a local model dir          keyed by its files' content
    a hub id                   keyed by its name (pin a revision by downloading it to a dir)

The key enters the cache key of whatever reads the model (a blend, a stage), so a new teacher
regenerates its traces and retrains its students, and the same teacher never does.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from tinyreason.data.sources import file_digest
from tinyreason.model import gguf
from tinyreason.outputs import ModelRef, Outputs, digest

STAGE, GGUF, DIR, HUB = "stage", "gguf", "dir", "hub"
BASE = "base"  # the experiment's base model, as a `parent:` may name it
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
FORMS = "an earlier stage's name, a model dir, a .gguf file, or a hub id"


def looks_local(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~")) or Path(ref).expanduser().exists()


def kind_of(ref: str, stage_names) -> str:
    if ref in stage_names:
        return STAGE
    if ref.lower().endswith(".gguf"):
        return GGUF
    return DIR if looks_local(ref) else HUB


def check_local(ref: str) -> None:
    """A local reference that cannot be loaded fails here, with the fix (config time)."""
    path = Path(ref).expanduser()
    if ref.lower().endswith(".gguf"):
        gguf.check(path)  # one line naming the file and the fix: missing, not GGUF, truncated, unknown architecture
        return
    if not path.is_dir():
        raise ValueError(f"{ref!r} is not a directory; give {FORMS}")
    if not (path / "config.json").is_file():
        raise ValueError(f"{ref!r} has no config.json, so it is not a model dir; save one with "
                         "model.save_pretrained(dir)")
    if not list(path.glob("*.safetensors")):
        raise ValueError(f"{ref!r} has no *.safetensors weights (pickled .bin files are never loaded); re-save it "
                         "with model.save_pretrained(dir)")
    if not any((path / f).exists() for f in TOKENIZER_FILES):
        raise ValueError(f"{ref!r} has no tokenizer ({', '.join(TOKENIZER_FILES)}); save it beside the weights "
                         "with tokenizer.save_pretrained(dir)")


def dir_key(path: str | Path) -> str:
    """A model dir's content key: every file's digest (big weights by size, mtime and ends)."""
    root = Path(path).expanduser()
    files = sorted(p for p in glob.glob(str(root / "**" / "*"), recursive=True) if os.path.isfile(p))
    return digest([(os.path.relpath(p, root), file_digest(p)) for p in files])


def resolve(ref: str, models: dict[str, ModelRef], outputs: Outputs, trust_remote_code: bool = False) -> ModelRef:
    """The model a reference names, ready to load: `models` holds the experiment's finished
    stages by name; a GGUF file is converted into `base/gguf-<key>/` once."""
    kind = kind_of(ref, models)
    if kind == STAGE:
        return models[ref]
    if kind == GGUF:
        key = file_digest(str(Path(ref).expanduser()))
        out = outputs.base(f"gguf-{key}")
        if not out.complete():
            gguf.convert(Path(ref).expanduser(), out.path)
            out.commit({"gguf": str(ref), "key": key})
        return ModelRef(Path(ref).name, str(out.path), str(out.path), digest({"gguf": key}))
    if kind == DIR:
        check_local(ref)
        path = str(Path(ref).expanduser().resolve())
        return ModelRef(Path(path).name, path, path, digest({"dir": dir_key(path)}))
    check_loadable(ref, trust_remote_code)
    return ModelRef(ref, ref, ref, digest({"hub": ref}))


def check_loadable(ref: str, trust_remote_code: bool = False) -> None:
    """A hub id whose config and tokenizer this machine can read (from the hub or its cache)."""
    # on use: transformers costs ~3 s, and only hub references need it here
    from transformers import AutoConfig, AutoTokenizer

    try:
        AutoConfig.from_pretrained(ref, trust_remote_code=trust_remote_code)
        AutoTokenizer.from_pretrained(ref, trust_remote_code=trust_remote_code)
    except Exception as e:  # the hub client raises many types; all mean "cannot get it"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"model {ref!r} cannot be loaded ({type(e).__name__}: {first[:200]}); it is not a stage of "
                         f"this experiment nor a local path, so it was read as a hub id. Give {FORMS} that this "
                         "machine can read (download hub models to a dir when the hub is unreachable)") from None


def tokenizer_difference(teacher, student) -> str | None:
    """Why two tokenizers do not share a vocabulary (token -> id), or None when they do."""
    a, b = teacher.get_vocab(), student.get_vocab()
    if a == b:
        return None
    only_teacher = sorted(set(a) - set(b), key=a.get)
    only_student = sorted(set(b) - set(a), key=b.get)
    moved = sorted((t for t in set(a) & set(b) if a[t] != b[t]), key=a.get)
    parts = [f"the teacher has {len(a):,} tokens, the student {len(b):,}"]
    if only_teacher:
        parts.append(f"only the teacher has {', '.join(only_teacher[:5])}")
    if only_student:
        parts.append(f"only the student has {', '.join(only_student[:5])}")
    if moved:
        parts.append(f"{len(moved):,} shared tokens have other ids (e.g. {moved[0]!r}: {a[moved[0]]} vs "
                     f"{b[moved[0]]})")
    return "; ".join(parts)
