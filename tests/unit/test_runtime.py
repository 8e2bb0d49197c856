"""The driver's runtime helpers, in a subprocess where they touch interpreter exit."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_driver_that_exits_at_once_waits_for_the_background_import(tmp_path):
    """init_ray imports transformers on a thread. A driver that exits right after must let
    that import finish: a daemon thread is frozen at finalization holding an import lock, and
    a job driver then hung in `_get_module_lock` (the e2e probe job, 2 runs in 10)."""
    (tmp_path / "slowmod.py").write_text(textwrap.dedent("""
        import pathlib, time
        time.sleep(1.0)  # still importing when the main thread is done
        pathlib.Path(__file__).with_name("imported").write_text("done")
        X = 1
    """))
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(tmp_path)!r}, {str(ROOT / "platform")!r}]
        from tinyreason.runtime import _import_in_background
        _import_in_background("slowmod", "X")
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "imported").exists(), "the process exited with the import still in flight"
