"""The console tells the story; errors reach it in one line. In a child process, since
console.setup points file descriptors 1 and 2 at the run's driver.log."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / "platform")!r})
        from tinyreason import console
        from tinyreason.runtime import fail
        with fail.on_error():
            console.setup({str(tmp_path / "logs")!r})
            console.say("story line")
    """) + textwrap.indent(textwrap.dedent(body), "    ") + "\nsys.exit(fail.exit_code)\n"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


def test_a_bug_says_so_on_the_console_and_leaves_its_traceback_in_the_log(tmp_path):
    done = _run(tmp_path, "undefined_name_here\n")
    assert done.returncode == 1
    assert "story line" in done.stdout
    assert "error: NameError: name 'undefined_name_here' is not defined (an internal error" in done.stderr
    assert str(tmp_path / "logs" / "driver.log") in done.stderr
    assert "Traceback" not in done.stdout + done.stderr  # the traceback is for the log, not the reader
    assert "Traceback (most recent call last)" in (tmp_path / "logs" / "driver.log").read_text()


def test_a_config_error_is_one_line_and_exit_code_1(tmp_path):
    done = _run(tmp_path, "from tinyreason.config.base import ConfigError\nraise ConfigError('x.yaml: bad; fix it')\n")
    assert done.returncode == 1
    assert "error: ConfigError: x.yaml: bad; fix it" in done.stderr and "Traceback" not in done.stdout + done.stderr
