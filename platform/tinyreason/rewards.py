"""GRPO rewards: built-in reward functions, user rewards by `module:function`, and
the guard that makes a failing reward say which reward and which row.

Every reward follows TRL 1.16's calling convention (`GRPOTrainer._calculate_rewards`): keyword
arguments `prompts`, `completions`, `completion_ids`, one per dataset column (`answer`...), plus
`trainer_state`, `log_extra` and `log_metric`; it returns one float per completion, None meaning
"not applicable". Completions are strings for plain prompts and `[{"role": "assistant",
"content": ...}]` for conversational ones. Pure: no Ray, no torch.

A stage lists rewards as specs; `reward_components` makes GRPOTrainer's arguments:

    funcs, weights, names = reward_components([
        {"name": "correctness", "weight": 1.0},
        {"name": "length_penalty", "weight": 0.1, "target_tokens": 256, "max_tokens": 512},
        {"path": "mypkg.rewards:brevity", "weight": 0.5, "name": "brevity"},
    ])
    GRPOTrainer(..., reward_funcs=funcs, args=GRPOConfig(reward_weights=weights, ...))
"""

import difflib
import functools
import importlib
import inspect
import logging
import math
import numbers
from typing import Any, Callable, Iterable, Mapping

from tinyreason import answers, claims
from tinyreason.completions import completion_text, prompt_text

log = logging.getLogger(__name__)

# Keyword arguments TRL passes besides dataset columns; any other name a reward
# requires is a column the blend must carry.
TRL_ARGS = frozenset({"prompts", "completions", "completion_ids", "trainer_state", "log_extra",
                      "log_metric", "environments"})
PROMPT_CHARS = 80  # of a row's prompt quoted in a RewardError: enough to find the row
SPEC_KEYS = ("name", "path", "weight")

RewardFn = Callable[..., list]


class RewardError(ValueError):
    """A reward failed while training; the message names the reward, the row and the fix."""


# ---------------------------------------------------------------- built-in rewards

def correctness(completions: list, answer: list | None = None, *, fallback: str | None = None,
                log_extra: Callable | None = None, **kwargs) -> list[float]:
    """1.0 when the final answer after `</think>` matches the row's `answer` column
    (numeric-aware, `answers.grade`), else 0.0. Unclosed <think>, nothing after
    </think>, an answer only inside the block and two different answers are 0.0.
    Under TRL each completion's grade reason goes to the completions table."""
    if answer is None:
        raise RewardError("reward 'correctness' needs an `answer` column holding each prompt's gold "
                          "answer; add one to the grpo blend (normalize GSM8K with answers.gsm8k_gold)")
    grades = [answers.grade(completion_text(c), gold, fallback) for c, gold in zip(completions, answer, strict=True)]
    if log_extra is not None:  # a 0.0 alone does not say unclosed vs wrong vs ambiguous
        log_extra("answer_grade", [g.reason for g in grades])
    return [1.0 if g.correct else 0.0 for g in grades]


def think_format(completions: list, *, partial: float = 0.0, **kwargs) -> list[float]:
    """1.0 for exactly one `<think>...</think>` at the start followed by a
    non-empty answer; `partial` for a closed block with an answer that breaks
    that form (text before <think>, a second block); 0.0 otherwise.

    Partial credit is off by default: it pays the very shapes the strict form
    excludes, and GRPO's group-relative advantage already separates a group's
    well-formed completions from its malformed ones without it.
    """
    scores = []
    for c in completions:
        split = answers.split_thinking(completion_text(c))
        answered = split.closed and split.opened and bool((split.answer or "").strip())
        scores.append(1.0 if answered and split.well_formed else partial if answered else 0.0)
    return scores


def length_penalty_scores(completions: list, completion_ids: list | None = None, *,
                          target_tokens: int, max_tokens: int, **kwargs) -> list[float]:
    """0.0 up to `target_tokens`, then falling linearly to -1.0 at `max_tokens` and
    staying there. Tokens are `completion_ids` lengths when TRL gives them,
    whitespace words otherwise."""
    scores = []
    for i, c in enumerate(completions):
        ids = completion_ids[i] if completion_ids is not None else None
        n = len(ids) if ids is not None else len(completion_text(c).split())
        over = max(0, n - target_tokens) / (max_tokens - target_tokens)
        scores.append(-min(1.0, over) if over else 0.0)
    return scores


def make_correctness(fallback: str | None = None) -> RewardFn:
    """`correctness` with its parameter; fallback='last_number' also grades the
    last number of an answer that states none ("... so 12 apples")."""
    if fallback not in answers.FALLBACKS:
        raise ValueError(f"correctness: fallback={fallback!r} is not one of {answers.FALLBACKS}; "
                         f"use null (marked answers only) or 'last_number'")
    return functools.partial(correctness, fallback=fallback)


def make_think_format(partial: float = 0.0) -> RewardFn:
    if not isinstance(partial, numbers.Real) or not 0.0 <= partial <= 1.0:
        raise ValueError(f"think_format: partial={partial!r} must be a number in [0, 1]; 0 turns it off")
    return functools.partial(think_format, partial=float(partial))


def length_penalty(target_tokens: int, max_tokens: int) -> RewardFn:
    """A length penalty reward (see `length_penalty_scores`); weight it against
    correctness in `reward_weights`. It applies to right and wrong completions
    alike, so keep its weight below correctness' or short wrong answers win."""
    for key, value in (("target_tokens", target_tokens), ("max_tokens", max_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"length_penalty: {key}={value!r} must be a non-negative integer")
    if max_tokens <= target_tokens:
        raise ValueError(f"length_penalty: max_tokens={max_tokens} must exceed target_tokens={target_tokens}; "
                         f"the penalty ramps from 0 at the target to -1 at max_tokens")
    return functools.partial(length_penalty_scores, target_tokens=target_tokens, max_tokens=max_tokens)


# name -> factory(**params) -> reward function
BUILTIN: dict[str, Callable[..., RewardFn]] = {
    "correctness": make_correctness,
    "think_format": make_think_format,
    "length_penalty": length_penalty,
    "step_arithmetic": lambda: claims.step_arithmetic,  # no parameters
}
# Dataset columns a built-in reads, checked against the blend at config time.
BUILTIN_COLUMNS = {"correctness": ("answer",), "think_format": (), "length_penalty": (), "step_arithmetic": ()}


# ---------------------------------------------------------------- user rewards, at config time

_P = inspect.Parameter
_SIGNATURE_FIX = ("define it as `def {attr}(prompts, completions, **kwargs) -> list[float]`, or name what it reads: "
                  "`def {attr}(completions, answer)` (TRL passes prompts, completions and one keyword per column)")


def _signature(fn: Callable) -> tuple[frozenset[str] | None, tuple[str, ...]]:
    """(the keyword names `fn` accepts, None when it takes **kwargs; the ones it requires).
    An uninspectable callable (a C builtin) is taken to accept everything."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None, ()
    named = [p for p in params if p.kind in (_P.POSITIONAL_OR_KEYWORD, _P.KEYWORD_ONLY)]
    accepts = None if any(p.kind is _P.VAR_KEYWORD for p in params) else frozenset(p.name for p in named)
    return accepts, tuple(p.name for p in named if p.default is _P.empty)


def _check_signature(path: str, fn: Callable, attr: str) -> None:
    fix = _SIGNATURE_FIX.format(attr=attr)
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None)):
        raise ValueError(f"reward {path!r} is async; tinyreason guards synchronous rewards only: {fix}")
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"reward {path!r}: its signature cannot be read ({exc}); {fix}") from None
    positional = [p.name for p in params if p.kind is _P.POSITIONAL_ONLY and p.default is _P.empty]
    accepts, _ = _signature(fn)
    if positional or (accepts is not None and "completions" not in accepts):
        problem = (f"takes positional-only {positional}" if positional else "does not accept `completions`")
        raise ValueError(f"reward {path!r} has the wrong signature {inspect.signature(fn)}: it {problem}; {fix}")


def load_reward(path: str) -> RewardFn:
    """Import a user reward given as 'package.module:function' and check that TRL
    can call it. Raises ValueError naming the path and the fix when the module
    does not import, the attribute is missing or not callable, or the signature
    cannot take TRL's keyword arguments. Call it when the config is validated,
    so a typo fails before Ray starts rather than at the first GRPO step."""
    module_name, sep, attr = path.partition(":") if isinstance(path, str) else ("", "", "")
    if not sep or not module_name or not attr:
        raise ValueError(f"reward path {path!r} is not 'module:function'; write it as 'mypkg.rewards:my_reward'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure (syntax, its own imports) is the user's to fix
        raise ValueError(f"reward {path!r}: module {module_name!r} does not import ({type(exc).__name__}: "
                         f"{exc}); make it importable from the job's working directory (ray job submit "
                         f"--working-dir) or install its package") from exc
    fn: Any = module
    for part in attr.split("."):
        if not hasattr(fn, part):
            near = difflib.get_close_matches(part, dir(fn), n=3)
            hint = f"did you mean {', '.join(near)}?" if near else f"define `{part}` in {module_name}"
            raise ValueError(f"reward {path!r}: {module_name} has no attribute {attr!r}; {hint}")
        fn = getattr(fn, part)
    if not callable(fn):
        raise ValueError(f"reward {path!r} is a {type(fn).__name__}, not callable; point the path at a "
                         f"function: {_SIGNATURE_FIX.format(attr=attr.rsplit('.', 1)[-1])}")
    _check_signature(path, fn, attr.rsplit(".", 1)[-1])
    return fn


# ---------------------------------------------------------------- the guard, at run time

def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:PROMPT_CHARS] + '...' if len(text) > PROMPT_CHARS else text}"


def _number(name: str, index: int, value: Any) -> float | None:
    if value is None:  # TRL: not applicable to this completion (NaN, left out of the sum)
        return None
    try:  # float() takes ints, bools, numpy and 0-d torch scalars; strings are no rewards
        number = float(value) if not isinstance(value, (str, bytes)) else None
    except (TypeError, ValueError):
        number = None
    if number is None:
        raise RewardError(f"reward {name!r} returned a non-number at index {index}: {_show(value)}; "
                          f"return floats (None where the reward does not apply)")
    if math.isinf(number):
        raise RewardError(f"reward {name!r} returned {number} at index {index}; an infinite reward makes "
                          f"every advantage in its group NaN: clip it to a finite range")
    return number


def _checked(name: str, out: Any, n: int) -> list[float | None]:
    if isinstance(out, (str, bytes, Mapping)) or not hasattr(out, "__len__") or not hasattr(out, "__iter__"):
        raise RewardError(f"reward {name!r} returned {_show(out)}; return a list of {n} floats, "
                          f"one per completion (None where it does not apply)")
    values = list(out)
    if len(values) != n:
        raise RewardError(f"reward {name!r} returned {len(values)} values for {n} completions: "
                          f"{_show(values)}; return exactly one float (or None) per completion, in order")
    return [_number(name, i, v) for i, v in enumerate(values)]


def _failing_row(fn: Callable, call: dict, n: int) -> int | None:
    """The first row that raises on its own. Rewards are pure, so replaying them
    one row at a time is safe; it only runs once a batch has already failed."""
    for i in range(n):
        row = {k: v[i:i + 1] if isinstance(v, list) and len(v) == n else v for k, v in call.items()}
        try:
            fn(**row)
        except Exception:
            return i
    return None


class GuardedReward:
    """A reward as TRL calls it, with errors that name the reward and the row.

    `__name__` is what TRL logs (`rewards/<name>/mean`, `/std`). Keyword
    arguments the function does not name are dropped for it, so a reward may
    take just the columns it reads; spec `params` are passed too and win over
    a column of the same name. Picklable when `fn` is a module-level
    function or a partial of one, as Ray needs to ship it to train workers.
    """

    def __init__(self, fn: Callable, name: str, params: Mapping | None = None,
                 columns: Iterable[str] | None = None):
        self.fn, self.__name__, self.params = fn, name, dict(params or {})
        self.accepts, required = _signature(fn)
        inferred = (r for r in required if r not in TRL_ARGS and r not in self.params)
        self.columns = tuple(inferred if columns is None else columns)

    def __repr__(self) -> str:
        return f"GuardedReward({self.__name__!r}, {self.fn!r}, params={self.params})"

    def __call__(self, prompts: list | None = None, completions: list | None = None, **kwargs) -> list:
        n = len(completions or [])
        call = {"prompts": prompts, "completions": completions, **kwargs, **self.params}
        missing = [c for c in self.columns if c not in call]
        if missing:
            have = sorted(k for k in kwargs if k not in TRL_ARGS)
            raise RewardError(f"reward {self.__name__!r} needs column(s) {missing} that the dataset does not "
                              f"have (it has {have}); add them to the grpo blend")
        if self.accepts is not None:
            call = {k: v for k, v in call.items() if k in self.accepts}
        try:
            out = self.fn(**call)
        except RewardError:
            raise
        except Exception as exc:
            raise self._located(exc, call, prompts, n) from exc
        return _checked(self.__name__, out, n)

    def _located(self, exc: Exception, call: dict, prompts: list | None, n: int) -> RewardError:
        what = f"reward {self.__name__!r} raised {type(exc).__name__}: {exc}"
        row = _failing_row(self.fn, call, n)
        if row is None:
            return RewardError(f"{what} on a batch of {n} completions, though no single row raises alone; "
                               f"fix the reward function (it fails on the batch as a whole)")
        prompt = prompt_text(prompts[row] if prompts and row < len(prompts) else None)[:PROMPT_CHARS]
        return RewardError(f"{what} on row {row} of {n} (prompt: {prompt!r}); fix the reward function, "
                           f"or the row in the blend if it is malformed")


def guarded(fn: Callable, name: str) -> GuardedReward:
    """`fn` whose failures, wrong-length results and non-numbers raise RewardError naming `name`."""
    return GuardedReward(fn, name)


# ---------------------------------------------------------------- specs -> TRL arguments

def _check_name(name: Any, spec: Mapping) -> str:
    if not isinstance(name, str) or not name or "/" in name or name != name.strip():
        raise ValueError(f"reward spec {dict(spec)}: name={name!r} must be a non-empty string without '/' "
                         f"or surrounding spaces; TRL logs it as rewards/<name>/mean")
    return name


def _builtin(spec: Mapping, params: dict) -> GuardedReward:
    name = spec.get("name")
    if name not in BUILTIN:
        raise ValueError(f"reward name={name!r} is not a built-in ({', '.join(BUILTIN)}); use one of them, "
                         f"or give path: 'module:function' for your own reward")
    factory = BUILTIN[name]
    try:
        fn = factory(**params)
    except TypeError as exc:
        raise ValueError(f"reward {name!r}: {exc}; its parameters are {inspect.signature(factory)}") from None
    return GuardedReward(fn, name, columns=BUILTIN_COLUMNS[name])


def default_name(path: str) -> str:
    """The name a user reward logs under (rewards/<name>/mean) when its spec gives none: the
    function's, `mypkg.rewards:my_reward` -> `my_reward`."""
    return path.rsplit(":", 1)[-1].rsplit(".", 1)[-1]


def _user(spec: Mapping, params: dict) -> GuardedReward:
    path = spec["path"]
    fn = load_reward(path)
    accepts, _ = _signature(fn)
    bad = sorted(k for k in params if k in TRL_ARGS or (accepts is not None and k not in accepts))
    if bad:
        raise ValueError(f"reward {path!r}: spec parameter(s) {bad} are not parameters of the function (or "
                         f"are TRL's own arguments); add them to its signature or remove them from the spec")
    name = spec.get("name", default_name(path))
    return GuardedReward(fn, _check_name(name, spec), params)


def make_reward(spec: Mapping, columns: Iterable[str] | None = None) -> GuardedReward:
    """A guarded reward from a spec: {name: <built-in>, weight, ...params} or {path: 'module:function',
    weight, name: <log name, default the function's>, ...params}. With `columns` (the blend's), a
    reward reading a column the blend lacks fails here, at config time."""
    if not isinstance(spec, Mapping) or ("name" not in spec and "path" not in spec):
        raise ValueError(f"reward spec {spec!r} needs a name or a path; write {{name: correctness, weight: 1.0}} "
                         f"or {{path: 'mypkg.rewards:my_reward', weight: 1.0}}")
    params = {k: v for k, v in spec.items() if k not in SPEC_KEYS}
    reward = _builtin(spec, params) if spec.get("path") is None else _user(spec, params)
    if columns is not None:
        missing = [c for c in reward.columns if c not in set(columns)]
        if missing:
            raise ValueError(f"reward {reward.__name__!r} reads column(s) {missing} that the blend does not "
                             f"have ({sorted(columns)}); add them in the blend's normalize step or drop the reward")
    return reward


def _weight(spec: Mapping) -> float:
    weight = spec.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight):
        raise ValueError(f"reward spec {dict(spec)}: weight={weight!r} must be a finite number; 0 logs the "
                         f"reward without training on it")
    return float(weight)


def reward_components(specs: Iterable[Mapping], columns: Iterable[str] | None = None
                      ) -> tuple[list[GuardedReward], list[float], list[str]]:
    """(reward_funcs, reward_weights, names) for GRPOTrainer and GRPOConfig, from specs."""
    specs = list(specs)
    if not specs:
        raise ValueError("a grpo stage needs at least one reward; e.g. rewards: [{name: correctness}]")
    columns = None if columns is None else list(columns)
    funcs = [make_reward(s, columns) for s in specs]
    weights = [_weight(s) for s in specs]
    names = [f.__name__ for f in funcs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"reward name(s) {twice} appear twice and would share TRL's rewards/<name>/mean; "
                         f"give each path reward a distinct `name`, and use each built-in once")
    log.info("rewards: %s", ", ".join(f"{n} x{w:g}" for n, w in zip(names, weights)))
    return funcs, weights, names
