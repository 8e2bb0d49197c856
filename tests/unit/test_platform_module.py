"""The source root is named `platform/` but must never shadow the standard library module."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_stdlib_platform_still_works_from_repo_root():
    assert not (ROOT / "platform" / "__init__.py").exists()
    out = subprocess.run(
        [sys.executable, "-c", "import platform; print(platform.system()); import tinyreason; print('ok')"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    assert out.stdout.split() == [__import__("platform").system(), "ok"]
