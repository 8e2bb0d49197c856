"""A real-browser check of a rendered report: Debian's headless Chromium through Selenium.

`check_report(html, screenshot)` loads the page, reads the DOM after load and returns
the problems a reader would see (broken images, raw markdown, torn tables, a page that
scrolls sideways), then saves a full-page screenshot. Set-up: `make setup` installs
`chromium` + `chromium-driver` with apt; nothing is downloaded (the network is closed
here, and Selenium Manager is never asked for a driver since both paths are given).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from pathlib import Path

WINDOW = (1280, 900)
# Chrome's screenshots stop at its largest texture; a taller report is cut at this height
MAX_SCREENSHOT_HEIGHT = 16_000
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         f"--window-size={WINDOW[0]},{WINDOW[1]}"]


def chromium_paths() -> tuple[str | None, str | None]:
    """(browser, driver) on PATH, either None when missing."""
    browser = next((p for name in ("chromium", "chromium-browser") if (p := shutil.which(name))), None)
    return browser, shutil.which("chromedriver")


def missing_browser() -> str | None:
    """Why the browser checks cannot run here, or None when they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[test]'"
    browser, driver = chromium_paths()
    if browser and driver:
        return None
    missing = [name for name, path in (("chromium", browser), ("chromedriver", driver)) if not path]
    return f"{' and '.join(missing)} not on PATH: `make setup` installs them (apt-get install chromium chromium-driver)"


@contextlib.contextmanager
def chromium():
    """A headless Chromium driven by chromedriver, with a fresh profile removed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium_paths()
    if not (browser and driver_path):
        raise RuntimeError(missing_browser())
    profile = tempfile.mkdtemp(prefix="tinyreason-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path, log_output=subprocess.DEVNULL))
    try:
        driver.set_page_load_timeout(30)
        driver.set_script_timeout(15)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# Runs in the page after load. Text inside pre/code/kbd/samp is literal by design and skipped.
_DOM_CHECKS = r"""
const problems = [];
const snip = s => JSON.stringify(s.replace(/\s+/g, ' ').trim().slice(0, 80));
const where = el => el.tagName.toLowerCase() + (el.getAttribute('class') ? '.' + el.getAttribute('class') : '');

document.querySelectorAll('img').forEach((img, i) => {
  if (!img.complete || img.naturalWidth === 0)
    problems.push(`image ${i + 1} (${img.alt || (img.getAttribute('src') || '').slice(0, 60)}) did not load`);
});
document.querySelectorAll('.missing-figure').forEach(el => problems.push(el.textContent.trim()));

const inline = el => getComputedStyle(el).display.startsWith('inline');
const startsLine = node => {
  let prev = node.previousSibling;
  while (prev && prev.nodeType === Node.TEXT_NODE && !prev.data.trim()) prev = prev.previousSibling;
  if (prev) return prev.nodeName === 'BR' || (prev.nodeType === Node.ELEMENT_NODE && !inline(prev));
  return !inline(node.parentElement);
};
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let node; (node = walker.nextNode());) {
  const el = node.parentElement;
  if (el.closest('script, style, pre, code, kbd, samp, textarea')) continue;
  const text = node.data;
  for (const [marker, re] of [['**', /\*\*/], ['`', /`/], ['![', /!\[/]])
    if (re.test(text)) problems.push(`raw markdown ${marker} in ${where(el)}: ${snip(text)}`);
  text.split('\n').forEach((line, i) => {
    if ((i > 0 || startsLine(node)) && /^\s*(\||#{1,6}(\s|$))/.test(line))
      problems.push(`raw markdown line in ${where(el)}: ${snip(line)}`);
  });
  if (!el.closest('table') && /\|\s*:?-{3,}:?\s*\|/.test(text))
    problems.push(`table syntax outside a table, in ${where(el)}: ${snip(text)}`);
}

const cells = row => [...row.cells].reduce((n, c) => n + (c.colSpan || 1), 0);
document.querySelectorAll('table').forEach((table, i) => {
  const rows = [...table.rows];
  if (!rows.length) return;
  const head = cells(rows[0]);
  rows.slice(1).forEach((row, j) => {
    if (cells(row) !== head) problems.push(`table ${i + 1}: row ${j + 1} has ${cells(row)} cells, its header ${head}`);
  });
  const wrap = table.closest('.table-wrap');
  if (wrap) return;
  const box = table.parentElement, style = getComputedStyle(box);
  const inner = box.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  if (table.offsetWidth > inner + 1)
    problems.push(`table ${i + 1} is ${table.offsetWidth}px wide in a ${Math.round(inner)}px box ` +
                  'and not in a .table-wrap');
});
const page = document.documentElement;
if (page.scrollWidth > page.clientWidth + 1)
  problems.push(`the page scrolls sideways: ${page.scrollWidth}px wide in a ${page.clientWidth}px window`);
return problems;
"""

_IMAGES_DECODED = """
const done = arguments[arguments.length - 1];
Promise.all([...document.images].map(img => img.decode().catch(() => null))).then(() => done(true));
"""


def check_report(html_path: str | Path, screenshot_path: str | Path, driver=None) -> list[str]:
    """Problems a reader would see in the rendered page (empty: none), checked from the DOM
    after load at a 1280 px window; then a full-page screenshot at `screenshot_path`.
    Pass a `driver` from `chromium()` to reuse one browser across pages (~2.5 s a start)."""
    if driver is None:
        with chromium() as own:
            return check_report(html_path, screenshot_path, own)
    driver.set_window_size(*WINDOW)
    driver.get(Path(html_path).resolve().as_uri())
    driver.execute_async_script(_IMAGES_DECODED)
    problems = driver.execute_script(_DOM_CHECKS)
    height = driver.execute_script(
        "return Math.ceil(Math.max(document.documentElement.scrollHeight, document.body.scrollHeight))")
    chrome = driver.execute_script("return window.outerHeight - window.innerHeight")
    driver.set_window_size(WINDOW[0], min(height + chrome, MAX_SCREENSHOT_HEIGHT))
    Path(screenshot_path).parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(screenshot_path)):
        problems.append(f"no screenshot written to {screenshot_path}")
    return problems
