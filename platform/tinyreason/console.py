"""The console tells the run's story in a few lines; the run's log files keep everything.

`setup(logs_dir)` (the entry points call it) sends every log record, and everything
written to this process's stdout and stderr (Ray's stream of the workers' output, TRL's
and DeepSpeed's prints, warnings), to `<logs_dir>/driver.log`. The console keeps the
platform's own INFO lines (`tinyreason.*` loggers: blend built, training started, done,
evaluated, reused), one progress bar per running stage (a line at each quarter when the
console is not a terminal), warnings and errors, and the final tables. `verbose=True`
leaves stdout and stderr alone and shows every logger.

Without `setup` (library use, tests) nothing is redirected and `progress` draws nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import warnings
from pathlib import Path

from tqdm import tqdm

from tinyreason.train.progress import ProgressBoard

LOG_FILE = "driver.log"
QUIET_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune", "transformers", "datasets", "deepspeed", "urllib3",
                 "filelock", "torch", "matplotlib", "lm_eval", "wandb")


class _State:
    stream = None  # the terminal, once stdout is redirected to the log file
    errors = None  # the terminal's stderr, likewise: errors go there, the story to stdout
    board: ProgressBoard | None = None
    tty = False
    verbose = False
    logs_dir: Path | None = None
    bars = 0


_state = _State()


def setup(logs_dir: str | Path, verbose: bool = False) -> Path:
    """Route this process's logs to `<logs_dir>/driver.log` and the story to the console."""
    logs_dir = Path(logs_dir)
    logs_dir.mkdir(parents=True, exist_ok=True)
    log_path = logs_dir / LOG_FILE
    _state.logs_dir, _state.verbose, _state.tty = logs_dir, verbose, sys.stdout.isatty()
    sys.stdout.flush()
    sys.stderr.flush()
    terminal = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
    _state.errors = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")  # errors: stderr
    if not verbose:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    _state.stream = terminal

    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    for h in list(root.handlers):
        root.removeHandler(h)
    to_file = logging.FileHandler(log_path, encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    to_file.setLevel(logging.DEBUG)
    to_console = logging.StreamHandler(terminal)
    to_console.setFormatter(_ConsoleFormat())
    to_console.setLevel(logging.INFO)
    if not verbose:
        to_console.addFilter(_story)
    root.addHandler(to_file)
    root.addHandler(to_console)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    logging.captureWarnings(True)
    if not verbose:
        warnings.simplefilter("default")
    return log_path


def _story(record: logging.LogRecord) -> bool:
    """The console's filter: the platform's own lines, and anything at ERROR from anyone."""
    return record.name.startswith("tinyreason") or record.levelno >= logging.ERROR


class _ConsoleFormat(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"[{stamp}] {level}{record.getMessage()}"


def log_file() -> Path | None:
    """The driver log of this process, once `setup` has run."""
    return _state.logs_dir / LOG_FILE if _state.logs_dir else None


def is_setup() -> bool:
    return _state.stream is not None


def verbose() -> bool:
    """Whether everything is shown: `--verbose`, or no console set up (library use)."""
    return _state.verbose or not is_setup()


def say(text: str = "") -> None:
    """Lines for the reader (tables, the closing summary): on the console, and in the log."""
    logging.getLogger("tinyreason.summary").debug("%s", text)
    (_state.stream or sys.stdout).write(text + "\n")
    (_state.stream or sys.stdout).flush()


def error(text: str) -> None:
    """An error for the reader: on the console's stderr and in the log."""
    logging.getLogger("tinyreason.error").debug("%s", text)
    stream = _state.errors or sys.stderr
    stream.write(f"\nerror: {text}\n")
    stream.flush()


@contextlib.contextmanager
def progress(label: str):
    """While a stage trains: a live bar on a terminal, a line at each quarter otherwise. Yields
    the board its rank 0 posts to (None without a console: nothing is drawn or posted)."""
    if not is_setup():
        yield None
        return
    if _state.board is None:
        _state.board = ProgressBoard.create(label)
    board = _state.board.for_stage(label)
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(board, label, stop), name=f"progress-{label}", daemon=True)
    watcher.start()
    try:
        yield board
    finally:
        stop.set()
        watcher.join(timeout=5)


def _watch(board: ProgressBoard, label: str, stop: threading.Event) -> None:
    bar, quarter = None, 0
    position = _state.bars
    _state.bars += 1
    try:
        while not stop.wait(0.5 if _state.tty else 2.0):
            seen = board.read()
            if not seen or not seen.get("total"):
                continue
            step, total = seen["step"], seen["total"]
            loss = f", loss {seen['loss']:.3f}" if seen.get("loss") is not None else ""
            if _state.tty:
                if bar is None:
                    bar = tqdm(total=total, desc=label, file=_state.stream, position=position, leave=False,
                               dynamic_ncols=True, bar_format="{desc} {bar} {n_fmt}/{total_fmt} [{elapsed}<{remaining}]{postfix}")
                bar.n = step
                bar.set_postfix_str(loss.lstrip(", "), refresh=True)
            elif step * 4 // total > quarter and step < total:
                quarter = step * 4 // total
                logging.getLogger("tinyreason.progress").info("%s: step %d/%d (%d%%)%s", label, step, total,
                                                              100 * step // total, loss)
    finally:
        if bar is not None:
            bar.close()
        _state.bars -= 1
