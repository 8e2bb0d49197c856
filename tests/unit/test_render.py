"""render.py: markdown tables that hold any text, the self-contained report page, and
a real headless Chromium reading that page (skipped only where chromium is absent)."""

import logging
import struct
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/browser.py, a helper, not a test

import browser  # noqa: E402
from tinyreason.render import markdown_to_html, md_details, md_table, relative_to  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "render"

NASTY = ["a | b", "two\nlines", "crlf\r\nline", "  padded  ", "<think>x</think>", "**not bold**", "`tick`",
         "__init__", "snake_case_name", "back\\slash\\", "&amp; &copy;", "[link](x)", "![img](y.png)", "~~s~~",
         "ünïcödé 数学 🙂", "| --- |", "# not a heading", "", "trailing |", "\\|", "/runs/" + "a_b&c" * 40]


class _Cells(HTMLParser):
    """The text of every th/td, with <br> as a newline."""

    def __init__(self):
        super().__init__()
        self.cells, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag in ("td", "th"):
            self._cell = ""
        elif tag == "br" and self._cell is not None:
            self._cell += "\n"

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.cells.append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _cells(html: str) -> list[str]:
    parser = _Cells()
    parser.feed(html)
    return parser.cells


def test_any_text_stays_one_cell_and_reads_as_written(tmp_path):
    table = md_table(["text", "n"], [[s, i] for i, s in enumerate(NASTY)])
    assert len(table.splitlines()) == 2 + len(NASTY)  # no cell broke a row in two
    cells = _cells(markdown_to_html(table, tmp_path, "t"))
    expected = ["text", "n"] + [c for i, s in enumerate(NASTY) for c in (s.replace("\r\n", "\n").strip(), str(i))]
    assert cells == expected


def test_intraword_underscores_stay_unescaped_in_the_markdown():
    assert "tinyreason_reasoning" in md_table(["benchmark"], [["tinyreason_reasoning"]])


def test_none_is_a_dash_and_short_rows_are_padded():
    lines = md_table(["a", "b", "c"], (r for r in [("x", None)])).splitlines()
    assert [c.strip() for c in lines[2].strip("|").split("|")] == ["x", "-", "-"]


def test_numbers_are_right_aligned_text_left_unless_told():
    table = md_table(["name", "score", "delta", "steps"],
                     [["sft", 0.25, "0.200 (+0.150)", "1,024"], ["dpo", None, "-", 7]])
    assert _alignments(table) == ["left", "right", "right", "right"]
    assert "0.25" in table and "1,024" in table  # cells kept as given, not reformatted
    assert _alignments(md_table(["a", "b"], [["x", 1]], align=["center", None])) == ["center", "right"]


def _alignments(table: str) -> list[str]:
    names = {(True, False): "left", (False, True): "right", (True, True): "center", (False, False): "none"}
    return [names[c.strip().startswith(":"), c.strip().endswith(":")]
            for c in table.splitlines()[1].strip("|").split("|")]


def test_bad_rows_and_alignments_are_named():
    with pytest.raises(ValueError, match="row 1 has 3 cells for 2 headers"):
        md_table(["a", "b"], [["x", "y"], ["x", "y", "z"]])
    with pytest.raises(ValueError, match="align must give one of"):
        md_table(["a", "b"], [], align=["left", "middle"])


def _png(path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.5), dpi=100)
    ax.plot(range(20), [1 / (1 + i) for i in range(20)], marker=".")
    ax.set(title=title, xlabel="optimizer step", ylabel="loss")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def test_page_inlines_figures_wraps_tables_and_renders_markup(tmp_path):
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "curve one.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>')
    _png(tmp_path / "a.png", "a")
    md = ("# Report\n\nSome **bold** and `code`.\n\n" + md_table(["k", "v"], [["x", 1]]) + "\n\n"
          "![a](a.png)\n\n![curve](<plots/curve one.svg>)\n\n![remote](https://example.org/x.png)\n\n"
          + md_details("sample <1>", "**raw** ```fence``` <think>t</think>") + "\n")
    page = markdown_to_html(md, tmp_path, "Report <run>")
    assert "<title>Report &lt;run&gt;</title>" in page
    assert "<strong>bold</strong>" in page and "<code>code</code>" in page
    assert page.count('<div class="table-wrap"><table>') == 1 and "</table>\n</div>" in page
    assert 'src="data:image/png;base64,iVBOR' in page and 'src="data:image/svg+xml;base64,' in page
    assert 'src="https://example.org/x.png"' in page  # a URL is left as written
    assert "<details><summary>sample &lt;1&gt;</summary>" in page
    assert "**raw** ```fence``` &lt;think&gt;t&lt;/think&gt;" in page  # verbatim inside the fold


def test_missing_figure_is_a_visible_box_and_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="tinyreason.render"):
        page = markdown_to_html("![loss](runs/loss.png)\n", tmp_path, "t")
    assert '<span class="missing-figure" role="img" aria-label="missing figure: runs/loss.png">' in page
    assert "<img" not in page
    assert "runs/loss.png not found" in caplog.text


def test_relative_to_inside_and_outside_the_root(tmp_path):
    assert relative_to(tmp_path / "run" / "model", tmp_path) == "run/model"
    assert relative_to(tmp_path, tmp_path) == "."
    assert relative_to("/elsewhere/ckpt/step-10", tmp_path) == "step-10"


# --------------------------------------------------------------------------- in a real browser

needs_chromium = pytest.mark.skipif(browser.missing_browser() is not None,
                                    reason=f"the browser checks need Chromium: {browser.missing_browser()}")


@pytest.fixture(scope="module")
def chrome():
    with browser.chromium() as driver:
        yield driver


def _sample_report(out: Path) -> Path:
    _png(out / "loss_curves.png", "loss")
    _png(out / "benchmarks.png", "benchmarks")
    wide = ["wide-" + "x" * 300] + [f"column value {i}" for i in range(12)]
    rows = [["sft", 0.123, "line one\nline two", "a | b", "ünïcödé 数学 🙂", "<think>", *[None] * 7],
            ["dpo", 1234, "", "x|y|z", "naïve", "ok", *["-"] * 7], wide]
    md = "\n".join([
        "# Curriculum report: sample", "", "Base model: `models/base`, trained with **DPO** (`apo_zero`).", "",
        "## Stages", "", md_table(["stage", "score", "note", "pipes", "unicode", "tag", *[f"c{i}" for i in range(7)]],
                                  rows), "",
        "- **sft**: new config", "- **dpo**: parent changed", "",
        "```yaml", "stages:", "  - kind: dpo  # | --- | inside code is fine", "```", "",
        "## Samples", "", md_details("dpo, prompt 1", "<think>\n2 + 3 = 5\n</think>\nThe answer is **5**."), "",
        "## Plots", "", "![loss_curves](loss_curves.png)", "", "![benchmarks](benchmarks.png)", ""])
    path = out / "report.html"
    path.write_text(markdown_to_html(md, out, "sample"), encoding="utf-8")
    return path


def _screenshot_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@needs_chromium
def test_a_rendered_report_reads_cleanly_in_chromium(tmp_path, chrome):
    shot = ARTIFACTS / "sample.png"
    shot.unlink(missing_ok=True)
    assert browser.check_report(_sample_report(tmp_path), shot, chrome) == []
    width, height = _screenshot_size(shot)
    assert width >= 1200 and height > 1500  # the whole page, not one window of it


def _bad_page(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.html"
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'></head><body>{body}</body></html>")
    return path


# Hand-written pages, each broken the way a renderer breaks: {name: (body, problems it must report)}
BAD_PAGES = {
    "torn-table": ("<table><tr><th>a</th><th>b</th></tr><tr><td>1</td></tr><tr><td>1</td><td>2</td><td>3</td></tr>"
                   "</table><p>| a | b |\n| --- | --- |\n| 1 | 2 |</p>",
                   ["row 1 has 1 cells, its header 2", "row 2 has 3 cells", 'raw markdown line in p: "| --- | --- |"',
                    "table syntax outside a table"]),
    "broken-image": ("<p>plot:</p><img src='loss_curves.png' alt='loss_curves'>",
                     ["image 1 (loss_curves) did not load"]),
    "raw-bold": ("<h1>Report</h1><p>trained with **DPO** and `apo_zero`</p><p>## Plots</p>",
                 ["raw markdown ** in p", "raw markdown ` in p", 'raw markdown line in p: "## Plots"']),
    "wide-table": ("<table><tr><th>" + "x" * 3000 + "</th></tr></table>",
                   ["not in a .table-wrap", "the page scrolls sideways"]),
}


@needs_chromium
@pytest.mark.parametrize("name", BAD_PAGES)
def test_bad_pages_are_caught(tmp_path, chrome, name):
    body, caught = BAD_PAGES[name]
    problems = browser.check_report(_bad_page(tmp_path, name, body), ARTIFACTS / f"bad-{name}.png", chrome)
    for text in caught:
        assert any(text in p for p in problems), (text, problems)


@needs_chromium
def test_a_missing_figure_box_is_caught(tmp_path, chrome, caplog):
    page = tmp_path / "report.html"
    page.write_text(markdown_to_html("# R\n\n![loss_curves](loss_curves.png)\n", tmp_path, "r"), encoding="utf-8")
    assert browser.check_report(page, ARTIFACTS / "bad-missing-figure.png", chrome) == [
        "missing figure: loss_curves.png"]
