"""The core suite on every other CPython 3.11+ found on this machine.

CI's machine has pyenv's 3.12 and 3.13 beside the 3.11 that runs the main suite;
each gets a throwaway virtual environment with pytest, and runs the core tests
(including CPython's own Future and Task suites for that version) from this
source tree. Interpreters that are not there are skipped.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE_TESTS = [
    "tests/test_core_events.py",
    "tests/test_core_compat.py",
    "tests/test_core_install.py",
    "tests/test_cpython_contract.py",
    "tests/test_loops.py",
]


def _interpreters() -> dict[str, str]:
    found: dict[str, str] = {}
    candidates = [shutil.which(f"python3.{minor}") for minor in range(11, 16)]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[1-9]*/bin/python3")))
    for path in candidates:
        if not path:
            continue
        try:
            version = subprocess.run(
                [path, "-c", "import sys; print('{}.{}'.format(*sys.version_info[:2]))"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue
        current = "{}.{}".format(*sys.version_info[:2])
        if version != current and version not in found:
            found[version] = path
    return found


INTERPRETERS = _interpreters()


@pytest.mark.slow
@pytest.mark.parametrize("version", sorted(INTERPRETERS) or ["none"])
def test_core_suite_passes_on(version: str, tmp_path: Path) -> None:
    if version == "none":
        pytest.skip("no other CPython 3.11+ on this machine")
    python = INTERPRETERS[version]
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "pytest"], check=True, timeout=600)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *CORE_TESTS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
