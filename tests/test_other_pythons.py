"""The core suite on every other CPython 3.11+ found on this machine.

CI's machine has pyenv's 3.12 and 3.13 beside the 3.11 that runs the main suite;
each gets a throwaway virtual environment with pytest and an editable install of
this source tree, which builds the compiled core for that version (strictly:
-Wall -Werror), and runs the core tests (including CPython's own Future and Task
suites for that version) twice: on the compiled core, and on the pure-Python
reference.
Interpreters that are not there are skipped.
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
    "tests/test_seam.py",
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
    python_in_venv = str(venv / "bin" / "python")
    # Installed, not put on PYTHONPATH: tracedfuture.exporters only exists through
    # the install's package-dir mapping. The install builds the compiled core for
    # this version, strictly (-Wall -Werror, and no silent fallback).
    build = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "-e", str(ROOT)],
        cwd=tmp_path,
        env={**os.environ, "TRACEDFUTURE_STRICT_BUILD": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    for pure, expected in (("", "c"), ("1", "python")):
        env = {**os.environ, "TRACEDFUTURE_PURE_PYTHON": pure}
        which = subprocess.run(
            [python_in_venv, "-c", "import tracedfuture; print(tracedfuture.IMPLEMENTATION)"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert which.stdout == f"{expected}\n"
        result = subprocess.run(
            [python_in_venv, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CORE_TESTS],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        assert result.returncode == 0, expected + ": " + result.stdout[-4000:] + result.stderr[-2000:]
        assert " passed" in result.stdout.splitlines()[-1]
