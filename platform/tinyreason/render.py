"""Markdown tables and the report's HTML page, through maintained libraries.

`md_table` writes a GitHub-flavoured table with tabulate, every cell escaped so
that any text (pipes, newlines, `<think>`, backslashes) stays one cell and reads
as written; `md_details` folds long text (a generation) into a `<details>` block,
`md_details_parts` several labelled texts (its thinking and its answer).
`markdown_to_html` renders a report's markdown with markdown-it-py
(CommonMark + tables, raw HTML allowed for `<details>` blocks) into one
self-contained page: figures inlined as data URIs, tables in their own
horizontal scroll box. Pure apart from reading the figure files.
"""

from __future__ import annotations

import base64
import html
import logging
import mimetypes
import numbers
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote

from markdown_it import MarkdownIt
from tabulate import tabulate

log = logging.getLogger(__name__)

ALIGNMENTS = ("left", "right", "center")
# Inline markup a cell could trigger (CommonMark + GFM): always escaped. `_` only at a word's
# edge (intraword `_` never emphasizes, so `tinyreason_reasoning` stays readable in report.md),
# `&` only where it would start an entity.
_ALWAYS = re.compile(r"([\\`*\[\]<~|])")
_EDGE_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
# "12", "-0.5", "1,234", "1e-05", "12.5%", "0.200 (+0.150)": numbers as the report writers format them
_NUMBER = re.compile(r"[-+]?(\d[\d,]*)?\.?\d+([eE][-+]?\d+)?%?( \([-+]?(\d[\d,]*)?\.?\d+([eE][-+]?\d+)?%?\))?")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# A break opportunity every 30 characters of an unbroken run (a path, a hash, a run of one
# token): in a table cell such a run otherwise sets its column's minimum width, and one
# 300-character path pushed every other column out of view.
_LONG_RUN = re.compile(r"\S{30}(?=\S)")


def escape_cell(value) -> str:
    """One table cell as literal text: None is "-", newlines become <br>, markup is escaped."""
    if value is None:
        return "-"
    text = re.sub(r"\r\n?", "\n", str(value)).strip()
    text = _ALWAYS.sub(r"\\\1", text)
    text = _EDGE_UNDERSCORE.sub(r"\\_", text)
    text = _ENTITY.sub(r"\\&", text)
    return re.sub(r"[ \t]*\n[ \t]*", "<br>", text)


def _is_number(value) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, numbers.Real) or (isinstance(value, str) and bool(_NUMBER.fullmatch(value.strip())))


def _column_align(cells: list, given: str | None) -> str:
    if given is not None:
        return given
    values = [c for c in cells if c is not None and c != "" and c != "-"]
    return "right" if values and all(_is_number(c) for c in values) else "left"


def md_table(headers: Sequence, rows: Sequence[Sequence], align: Sequence[str | None] | None = None) -> str:
    """A GitHub-flavoured markdown table. Any text holds in any cell (see `escape_cell`);
    a row shorter than the headers is padded with "-". `align` gives "left", "right" or
    "center" per column, None for the default: numbers right-aligned, text left."""
    headers, rows = list(headers), [list(row) for row in rows]  # generators welcome
    width = len(headers)
    for i, row in enumerate(rows):
        if len(row) > width:
            raise ValueError(f"md_table: row {i} has {len(row)} cells for {width} headers: {list(row)!r}")
    if align is not None:
        bad = [a for a in align if a is not None and a not in ALIGNMENTS]
        if len(align) != width or bad:
            raise ValueError(f"md_table: align must give one of {ALIGNMENTS} or None per column ({width}); "
                             f"got {list(align)!r}")
    full = [row + [None] * (width - len(row)) for row in rows]
    colalign = [_column_align([r[j] for r in full], align[j] if align else None) for j in range(width)]
    # disable_numparse: cells arrive formatted ("0.150") and tabulate would reformat them ("0.15")
    return tabulate([[escape_cell(c) for c in r] for r in full], headers=[escape_cell(h) for h in headers],
                    tablefmt="pipe", colalign=colalign, disable_numparse=True)


def md_fence(text: str) -> str:
    """A fenced code block showing `text` verbatim: the fence is longer than any backtick run in it."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return f"{fence}text\n{text}\n{fence}"


def md_details(summary: str, text: str) -> str:
    """A folded block for long text (a sample generation): `<details>` around a fenced code
    block, so the text shows verbatim, markdown and `<think>` tags included."""
    return md_details_parts(summary, [("", text)])


def md_details_parts(summary: str, parts: Sequence[tuple[str, str]], open_: bool = False) -> str:
    """`md_details` with several labelled blocks (a generation's thinking, then its answer):
    each label a line of plain text (escaped), each text its own fenced block."""
    body = "\n\n".join((f"{escape_cell(label)}\n\n" if label else "") + md_fence(text) for label, text in parts)
    return (f"<details{' open' if open_ else ''}><summary>{html.escape(' '.join(summary.split()))}</summary>\n\n"
            f"{body}\n\n</details>")


def relative_to(path: str | Path, root: str | Path) -> str:
    """`path` relative to `root` (both resolved against the current dir), or only its
    name when it lies outside `root`: how the reports show a path without a machine's layout."""
    p, r = Path(path).resolve(), Path(root).resolve()
    return p.relative_to(r).as_posix() if p.is_relative_to(r) else p.name


def _figure(self, tokens, idx, options, env) -> str:
    """markdown-it's image rule, with a file path inlined as a data URI or shown as missing."""
    token = tokens[idx]
    src = token.attrGet("src") or ""
    if _SCHEME.match(src):
        return self.image(tokens, idx, options, env)  # a URL or data URI: left as written
    name = unquote(src)  # markdown-it percent-encodes the destination
    path = Path(env["base_dir"]) / name
    mime = mimetypes.guess_type(name)[0] or ""
    if not path.is_file() or not mime.startswith("image/"):
        why = "not found" if not path.is_file() else f"not an image type ({mime or 'unknown'})"
        log.warning("report figure %s %s under %s: shown as a missing-figure box", name, why, env["base_dir"])
        label = html.escape(f"missing figure: {name}")
        return f'<span class="missing-figure" role="img" aria-label="{label}">{label}</span>'
    token.attrSet("src", f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}")
    token.attrJoin("class", "figure")
    return self.image(tokens, idx, options, env)


def _text(self, tokens, idx, options, env) -> str:
    """markdown-it's text rule, with <wbr> in long unbroken runs (see _LONG_RUN). NUL marks
    the breaks before escaping: CommonMark has already replaced any NUL in the input."""
    marked = _LONG_RUN.sub(lambda m: m.group(0) + "\0", tokens[idx].content)
    return html.escape(marked, quote=False).replace("\0", "<wbr>")


def _parser() -> MarkdownIt:
    # commonmark keeps raw HTML on (reports fold long generations into <details>); tables and
    # ~~strike~~ as on GitHub, so report.md reads the same there and in report.html
    md = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    md.add_render_rule("image", _figure)
    md.add_render_rule("text", _text)
    md.add_render_rule("table_open", lambda self, tokens, idx, options, env:
                       '<div class="table-wrap">' + self.renderToken(tokens, idx, options, env))
    md.add_render_rule("table_close", lambda self, tokens, idx, options, env:
                       self.renderToken(tokens, idx, options, env) + "</div>\n")
    return md


STYLE = """
:root { color-scheme: light; }
body { font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif;
       color: #1f2328; background: #fff; max-width: 960px; margin: 0 auto; padding: 24px 32px 64px; }
h1, h2, h3, h4 { line-height: 1.25; margin: 1.6em 0 0.6em; }
h1 { font-size: 1.9em; border-bottom: 1px solid #d8dee4; padding-bottom: 0.3em; margin-top: 0.4em; }
h2 { font-size: 1.45em; border-bottom: 1px solid #d8dee4; padding-bottom: 0.25em; }
h3 { font-size: 1.2em; }
p, ul, ol, details { margin: 0 0 1em; }
a { color: #0969da; }
code, pre { font: 0.9em/1.45 ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace; }
code { background: #eff1f3; padding: 0.15em 0.35em; border-radius: 4px; overflow-wrap: anywhere; }
pre { background: #f6f8fa; border: 1px solid #d8dee4; border-radius: 6px; padding: 12px 16px; overflow-x: auto; }
pre code { background: none; padding: 0; overflow-wrap: normal; }
.table-wrap { max-width: 100%; overflow-x: auto; margin: 0 0 1.2em; border: 1px solid #d8dee4; border-radius: 6px; }
table { border-collapse: collapse; font-size: 0.92em; }
th, td { padding: 6px 12px; border-bottom: 1px solid #d8dee4; vertical-align: top; text-align: left; }
th { background: #f6f8fa; font-weight: 600; white-space: nowrap; }
tbody tr:nth-child(even) { background: #f6f8fa; }
tbody tr:hover { background: #eef4ff; }
td { font-variant-numeric: tabular-nums; overflow-wrap: break-word; }
td[style*="text-align:right"] { white-space: nowrap; overflow-wrap: normal; }
img.figure { display: block; width: 100%; max-width: 900px; height: auto; margin: 1em 0; }
.missing-figure { display: block; max-width: 900px; box-sizing: border-box; margin: 1em 0; padding: 2em 1em;
                  border: 2px dashed #cf222e; border-radius: 6px; color: #cf222e; background: #fff5f5;
                  text-align: center; font-weight: 600; }
details { border: 1px solid #d8dee4; border-radius: 6px; padding: 0.5em 1em; }
details > summary { cursor: pointer; font-weight: 600; }
details[open] > summary { margin-bottom: 0.5em; }
blockquote { margin: 0 0 1em; padding: 0 1em; color: #59636e; border-left: 4px solid #d8dee4; }
"""


def markdown_to_html(markdown_text: str, base_dir: str | Path, title: str) -> str:
    """A report's markdown as one self-contained HTML page, to mail or attach as it is.
    Images given by path (relative to `base_dir`) are inlined; one that is missing is a
    visible "missing figure" box and a logged warning, not a broken image."""
    body = _parser().render(markdown_text, {"base_dir": str(base_dir)})
    return ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n")
