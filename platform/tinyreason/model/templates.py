"""A model's own chat template, made trainable: the family's format, special tokens and default
system prompt kept, the assistant turns found in what the template renders.

How loss masks are built. Three ways were open:
- insert `{% generation %}` around the assistant content (what TRL's assistant_only_loss needs):
  SmolLM2's template emits every role through one expression, so this is a rewrite, not an
  insertion, and TRL's own patched templates change the rendering (Qwen3's training copy emits
  a think block on every turn where the real one drops them from earlier turns);
- render prefixes (messages[:i] with the generation prompt, then messages[:i+1]): breaks on
  Qwen3, whose history loses earlier think blocks, so a prefix is not a prefix;
- derive the turn markers from the template itself and find them in the full rendering (ours).
  The generation prompt (`add_generation_prompt=True` minus `False`) is what opens an assistant
  turn; the first token after a probe reply is the end-of-turn token. A row's trained tokens run
  from after each opener through its end-of-turn token, in exactly the text the template renders
  (the one it will see at inference); a row where the openers found differ from its assistant
  turns, or a turn not closed by the end-of-turn token, is refused and counted (`template_mismatch`).

Families are recognised by the strings their templates hold (`FAMILIES`); another template is an
error naming `model.chat_template` unless the user says `own` (train on it anyway), `chatml`
(tinyreason's ChatML replaces it) or gives a template file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from tinyreason.model.chat import BOS, CHAT_TEMPLATE, EOS, PAD, THINK_CLOSE, THINK_OPEN

SETTING = "model.chat_template"
OWN, CHATML = "own", "chatml"  # the names model.chat_template takes besides a file
NAMES = (OWN, CHATML)

PROBE_USER, PROBE_REPLY = "tinyreason probe question 7", "tinyreason probe reply 7"
PROBE_SYSTEM = "\u27e6tinyreason probe system\u27e7"  # brackets no prompt starts with: common prefixes stop at it


class TemplateError(ValueError):
    """A chat template the platform cannot train on, phrased with the setting that fixes it."""


@dataclass(frozen=True)
class Family:
    name: str
    models: str  # who ships it, for messages and cards
    signature: tuple[str, ...]  # strings its template holds, all of them
    end_of_turn: str
    pads: tuple[str, ...] = ()  # pad tokens to use when the tokenizer has none, or pads with end_of_turn
    # passed to every rendering, so a row tokenizes the same on any day: Llama-3's template
    # stamps today's date (strftime_now) into its system header; this is its own fallback date
    render_kwargs: tuple[tuple[str, str], ...] = ()


# Qwen3 before ChatML: its template is ChatML plus reasoning_content.
FAMILIES = (
    Family("qwen3", "Qwen3", ("<|im_start|>", "<|im_end|>", "reasoning_content"), "<|im_end|>", ("<|endoftext|>",)),
    Family("chatml", "SmolLM2, Qwen2.5 and tinyreason's from-scratch models", ("<|im_start|>", "<|im_end|>"),
           "<|im_end|>", (PAD,)),
    Family("llama3", "Llama-3.x Instruct", ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), "<|eot_id|>",
           ("<|finetune_right_pad_id|>", "<|end_of_text|>"), (("date_string", "26 Jul 2024"),)),
    Family("gemma3", "Gemma-2 and Gemma-3 instruction-tuned", ("<start_of_turn>", "<end_of_turn>"), "<end_of_turn>",
           ("<pad>",)),
)


def family_of(template: str | None) -> Family | None:
    if not template:
        return None
    return next((f for f in FAMILIES if all(s in template for s in f.signature)), None)


def saved_template(tokenizer_dir) -> str | None:
    """A saved tokenizer's chat template, read from its files without loading it (transformers 5
    writes chat_template.jinja; older dirs keep it in tokenizer_config.json, maybe as a named list)."""
    d = Path(tokenizer_dir)
    if (d / "chat_template.jinja").is_file():
        return (d / "chat_template.jinja").read_text(encoding="utf-8")
    try:
        value = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template")
    except (OSError, ValueError):
        return None
    if isinstance(value, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        value = next((t.get("template") for t in value if t.get("name") == "default"), None)
    return value if isinstance(value, str) else None


def render_kwargs(template: str | None) -> dict:
    """What the platform passes to every rendering of this template (training, evaluation)."""
    fam = family_of(template)
    return dict(fam.render_kwargs) if fam else {}


def unknown_family(where: str, template: str | None) -> TemplateError:
    known = "; ".join(f"{f.name} ({f.models})" for f in FAMILIES)
    problem = "has no chat template" if not template else "has a chat template of no family tinyreason knows"
    return TemplateError(
        f"{where} {problem} (known: {known}); fix: set {SETTING}: own to train on the model's own template "
        f"(its turns are found by rendering), {CHATML} to replace it with tinyreason's ChatML, or a .jinja file")


# ---------------------------------------------------------------- turn markers and masks


@dataclass(frozen=True)
class Turns:
    """What opens an assistant turn and the token that closes it, read off a template."""

    opener: str
    end: str
    end_id: int


def _render(tok, messages, generation: bool, kwargs: dict) -> str:
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation, **kwargs)


def derive_turns(tok, where: str = "the model") -> Turns:
    template, kwargs = tok.chat_template, render_kwargs(tok.chat_template)
    user = [{"role": "user", "content": PROBE_USER}]
    try:
        bare, prompt = _render(tok, user, False, kwargs), _render(tok, user, True, kwargs)
        full = _render(tok, user + [{"role": "assistant", "content": PROBE_REPLY}], False, kwargs)
    except Exception as e:  # a template is code: any error it raises is the template's
        raise TemplateError(f"{where}: its chat template fails on a user/assistant exchange ({type(e).__name__}: "
                            f"{e}); fix: give {SETTING} a template that renders user and assistant turns") from None
    opener = prompt[len(bare):] if prompt.startswith(bare) else ""
    at = full.find(PROBE_REPLY)
    if not template or not opener or at < 0 or not full.startswith(prompt) or at < len(prompt):
        raise TemplateError(
            f"{where}: its chat template has no assistant turn tinyreason can find (the generation prompt must "
            "open the assistant's turn and the reply follow it; got generation prompt "
            f"{opener!r}); fix: give {SETTING} a template that renders assistant turns, or {CHATML}")
    tail = full[at + len(PROBE_REPLY):].lstrip()
    ids = tok(tail, add_special_tokens=False)["input_ids"] if tail else []
    if not ids or ids[0] not in tok.added_tokens_decoder:
        raise TemplateError(
            f"{where}: its chat template closes an assistant turn with {tail[:20]!r}, not with one special token "
            f"of the tokenizer, so generation could never stop at the end of a turn; fix: give {SETTING} a "
            f"template whose end-of-turn marker is a token of this tokenizer, or {CHATML} (which adds its tokens)")
    return Turns(opener, tok.convert_ids_to_tokens(ids[0]), ids[0])


def turns_of(tok) -> Turns:
    """derive_turns, once per tokenizer object and template (a Ray Data worker keeps one tokenizer)."""
    cache = getattr(tok, "_tinyreason_turns", None)
    if cache is None or cache[0] != tok.chat_template:
        cache = (tok.chat_template, derive_turns(tok))
        tok._tinyreason_turns = cache
    return cache[1]


def assistant_spans(text: str, turns: Turns) -> list[tuple[int, int]]:
    """(start, end) characters of each assistant turn's trained text: after its opener, through
    its end-of-turn token. An opener with no end after it is an unfinished turn: not a span."""
    spans, pos = [], 0
    while (i := text.find(turns.opener, pos)) >= 0:
        start = i + len(turns.opener)
        end = text.find(turns.end, start)
        if end < 0:
            break
        spans.append((start, end + len(turns.end)))
        pos = end + len(turns.end)
    return spans


@dataclass
class EncodedChat:
    text: str
    ids: list[int]
    mask: list[bool]  # True on the tokens an assistant turn trains on
    offsets: list[tuple[int, int]]
    matched: bool  # every assistant message found as one span ending in the end-of-turn token


def encode_chat(tok, messages: list[dict], kwargs: dict | None = None) -> EncodedChat:
    """A conversation rendered by its template and tokenized as apply_chat_template does, with
    the assistant spans as a token mask: from the token holding a span's first character through
    its end-of-turn token, so whitespace tokens inside a reply never leave holes."""
    turns = turns_of(tok)
    text = _render(tok, messages, False, {**render_kwargs(tok.chat_template), **(kwargs or {})})
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    spans = assistant_spans(text, turns)
    mask = [False] * len(ids)
    replies = [m.get("content") or "" for m in messages if m.get("role") == "assistant"]
    # each span must end with its reply's last characters: a reply holding the end-of-turn token's
    # text would otherwise end its span early and leave its tail untrained, silently
    matched = len(spans) == len(replies) and all(
        text[s:e - len(turns.end)].rstrip().endswith(_tail(r)) for (s, e), r in zip(spans, replies))
    t = 0
    for start, end in spans:
        while t < len(ids) and offsets[t][1] <= start:
            t += 1
        first = t
        while t < len(ids) and offsets[t][1] < end:
            t += 1
        if t >= len(ids) or ids[t] != turns.end_id:
            matched = False
            break
        for k in range(first, t + 1):
            mask[k] = True
        t += 1
    return EncodedChat(text, ids, mask, offsets, matched)


def _tail(reply: str) -> str:
    """A reply's last characters as any template renders them (Qwen3 re-spaces a think block)."""
    return reply.split(THINK_CLOSE)[-1].strip()[-32:]


def cut_in_think(text: str, cut: int) -> bool:
    """Whether cutting `text` at character `cut` leaves a <think> block open."""
    head = text[:cut]
    return head.rfind(THINK_OPEN) > head.rfind(THINK_CLOSE)


# ---------------------------------------------------------------- system prompt


_PRELUDE_OPEN, _PRELUDE_CLOSE = "{#- tinyreason: system prompt -#}", "{#- /tinyreason: system prompt -#}"
_PRELUDE = re.compile(re.escape(_PRELUDE_OPEN) + ".*?" + re.escape(_PRELUDE_CLOSE), re.S)


def with_system_prompt(template: str, prompt: str | None) -> str:
    """The template inserting `prompt` as the system turn of every conversation that brings none,
    in the family's own format (Gemma folds it into the first user turn, Llama into its system
    header). A prelude sets `messages`; the template below it is untouched. None: the template's
    own behaviour (an earlier prelude removed)."""
    base = _PRELUDE.sub("", template)
    if prompt is None:
        return base
    literal = json.dumps(prompt, ensure_ascii=False)  # a Jinja string literal: same escapes as JSON
    return (f"{_PRELUDE_OPEN}{{%- if not messages or messages[0]['role'] != 'system' %}}"
            f"{{%- set messages = [{{'role': 'system', 'content': {literal}}}] + messages %}}"
            f"{{%- endif %}}{_PRELUDE_CLOSE}" + base)


def system_prompt_of(tok) -> str | None:
    """The system prompt the tokenizer's template inserts when a conversation has none (None: none;
    "" for a template, like Llama-3's, that writes an empty system message). Read off renderings
    with and without a probe system turn: the probe's frame in one holds the default in the other.
    This is what issue 24's scoring and the cards call to say which prompt a model reads."""
    kwargs = render_kwargs(tok.chat_template)
    user = [{"role": "user", "content": PROBE_USER}]
    bare = _render(tok, user, False, kwargs)
    given = _render(tok, [{"role": "system", "content": PROBE_SYSTEM}] + user, False, kwargs)
    p = len(_common_prefix(bare, given))
    s = len(_common_prefix(bare[p:][::-1], given[p:][::-1]))
    if given[p:len(given) - s] != PROBE_SYSTEM:
        return None
    return bare[p:len(bare) - s]


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


# ---------------------------------------------------------------- one stage's tokenizer


def prepare(tok, setting: str | None = None, file_text: str | None = None, system_prompt: str | None = None,
            where: str = "the model") -> dict:
    """Make `tok` ready for a chat stage under model.chat_template and model.system_prompt; returns
    what was done, for the stage manifest and card. Idempotent: a stage's tokenizer prepared again
    (the next stage's parent) is left as it is."""
    own, added = tok.chat_template, []
    if setting in (None, OWN):
        fam = family_of(own)
        if not own or (fam is None and setting is None):
            raise unknown_family(where, own)
        template, source = own, "own"
    elif setting == CHATML:
        added = [t for t in (PAD, BOS, EOS) if t not in tok.get_vocab()]
        if added:
            extra = list(getattr(tok, "additional_special_tokens", []) or [])
            tok.add_special_tokens({"additional_special_tokens": extra + added})
        template, source = CHAT_TEMPLATE, "replaced by tinyreason's ChatML"
    else:
        if not file_text:
            raise TemplateError(f"{SETTING}={setting!r}: the file is empty; fix: give a .jinja chat template")
        template, source = file_text, f"replaced by {setting}"
    tok.chat_template = with_system_prompt(template, system_prompt)
    turns = derive_turns(tok, where)
    changes = _align_special_tokens(tok, turns, family_of(tok.chat_template))
    return {
        "template": source, "family": getattr(family_of(tok.chat_template), "name", None),
        "replaced": source != "own",
        "system_prompt": {"setting": system_prompt, "inserted": system_prompt_of(tok)},
        "end_of_turn": turns.end, "end_of_turn_id": turns.end_id, "opener": turns.opener,
        "eos_token": tok.eos_token, "pad_token": tok.pad_token, "added_tokens": added, "changes": changes,
        "render_kwargs": render_kwargs(tok.chat_template),
    }


def _align_special_tokens(tok, turns: Turns, fam: Family | None) -> list[str]:
    """eos is the end-of-turn token (generation, lm-eval and the held-out probe stop at it); pad is
    a token that is not it, so no collator can mistake a trained end of turn for padding."""
    changes = []
    if tok.eos_token != turns.end:
        changes.append(f"eos_token {tok.eos_token!r} -> {turns.end!r} (the end of an assistant turn)")
        tok.eos_token = turns.end
    if tok.pad_token is None or tok.pad_token == turns.end:
        vocab = tok.get_vocab()
        pad = next((p for p in (*(fam.pads if fam else ()), PAD) if p in vocab and p != turns.end), None)
        if pad is not None:
            changes.append(f"pad_token {tok.pad_token!r} -> {pad!r} (padding apart from the end of turn)")
            tok.pad_token = pad
        elif tok.pad_token is None:
            changes.append(f"pad_token None -> {turns.end!r} (the tokenizer has no other)")
            tok.pad_token = turns.end
    return changes


def think_record(tok, before: dict) -> dict:
    """Whether the stage reused the family's think tokens or added them (`before`: vocab before)."""
    ids = {t: tok.get_vocab().get(t) for t in (THINK_OPEN, THINK_CLOSE)}
    return {"ids": ids, "reused": [t for t in ids if t in before], "added": [t for t in ids if ids[t] is not None
                                                                         and t not in before]}


def align_generation(model, tok) -> None:
    """generate() stops at the end of a turn: generation_config's eos ids start with the
    tokenizer's eos (the end-of-turn token; the family's own ids are kept after it), and the
    model pads with the tokenizer's pad id."""
    eos = tok.eos_token_id
    have = model.generation_config.eos_token_id
    have = [] if have is None else [have] if isinstance(have, int) else list(have)
    ids = [eos] + [i for i in have if i != eos]
    model.generation_config.eos_token_id = ids[0] if len(ids) == 1 else ids
    model.generation_config.pad_token_id = tok.pad_token_id
    if hasattr(model.config, "pad_token_id"):
        model.config.pad_token_id = tok.pad_token_id


def describe(chat: dict | None) -> str:
    """The card's paragraph: which template, which system prompt, what changed, think tokens."""
    if not chat:
        return ""
    fam = f" ({chat['family']} family)" if chat.get("family") else ""
    sp = chat["system_prompt"]
    inserted = sp["inserted"]
    prompt = ("none" if not inserted else f"{inserted!r}")
    whose = "set by model.system_prompt" if sp["setting"] is not None else "the base model's own"
    lines = [f"Chat template: {chat['template']}{fam}; assistant turns end with `{chat['end_of_turn']}`, where "
             "generation stops.",
             f"System prompt inserted when a conversation has none ({whose}): {prompt}."]
    if chat.get("added_tokens"):
        lines.append("Tokens added for the template: " + ", ".join(f"`{t}`" for t in chat["added_tokens"]) + ".")
    lines += [f"Changed: {c}." for c in chat.get("changes", [])]
    think = chat.get("think")
    if think and (think["reused"] or think["added"]):
        how = (f"the family's own (ids {', '.join(str(think['ids'][t]) for t in think['reused'])})" if think["reused"]
               else "added: " + ", ".join(f"`{t}`" for t in think["added"]))
        lines.append(f"Think tokens: {how}.")
    return "\n".join(f"- {line}" for line in lines) + "\n"
