"""The core suite on every other CPython 3.11+ found on this machine.

CI's machine has pyenv's 3.12 and 3.13 beside the 3.11 that runs the main suite;
each gets a throwaway virtual environment with pytest and an editable install of
a copy of this source tree, which builds the compiled core for that version
(strictly: -Wall -Werror), and runs the core tests (including CPython's own
Future and Task suites for that version) twice: on the compiled core, and on the
pure-Python reference. These runs start in the background when collection ends
(tests/background.py), beside the rest of the suite.
Interpreters that are not there are skipped.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import pytest

from tests import background

ROOT = Path(__file__).resolve().parent.parent
CORE_TESTS = [
    "tests/test_core_events.py",
    "tests/test_core_compat.py",
    "tests/test_core_install.py",
    "tests/test_cpython_contract.py",
    "tests/test_seam.py",
    "tests/test_loops.py",
    "tests/test_task_step.py",
]
# Whole programs under `tracedfuture run` and at exit, where versions differ most
# (3.12 stopped threads from starting in atexit handlers): on the newest other
# Python only, with the test extra, to keep the suite within its time.
PROCESS_TESTS = [
    "tests/test_cli_run.py",
    "tests/test_production_safe.py",
    "tests/test_compat_programs.py",
    "tests/test_startup.py",
    "tests/test_pipeline.py",
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


def _copy_of_the_tree(into: Path) -> Path:
    """The source tree without its builds and environments: each job builds its
    own, undisturbed by this session's builds (test_packaging) or edits."""
    ignored = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info", "*.so", "__pycache__")
    return Path(shutil.copytree(ROOT, into / "src", ignore=ignored))


def _core_suites_on(python: str, newest: bool) -> list[tuple[str, subprocess.CompletedProcess[str]]]:
    """Build a venv for ``python`` with this tree installed, then run the core
    tests on each implementation (and, on the newest, the process tests on the
    compiled core): [(implementation, what IMPLEMENTATION said + the run)]."""
    with tempfile.TemporaryDirectory(prefix="other-python-") as tmp:
        root = _copy_of_the_tree(Path(tmp))
        venv = Path(tmp) / "venv"
        pip = str(venv / "bin" / "pip")
        strict = {"TRACEDFUTURE_STRICT_BUILD": "1"}
        # Installed, not put on PYTHONPATH: tracedfuture.exporters only exists
        # through the install's package-dir mapping. The install builds the
        # compiled core for this version, strictly (-Wall -Werror, and no silent
        # fallback).
        installs = (
            [([pip, "install", "-q", "-e", f"{root}[all,test]"], strict)]
            if newest
            else [
                ([pip, "install", "-q", "pytest"], {}),
                ([pip, "install", "-q", "--no-deps", "-e", str(root)], strict),
            ]
        )
        steps = [([python, "-m", "venv", str(venv)], {}), *installs]
        for command, env in steps:
            done = background.run(command, cwd=tmp, env={**os.environ, **env}, timeout=600)
            if done.returncode != 0:
                return [("build", done)]
        python_in_venv = str(venv / "bin" / "python")
        runs = []
        for pure, expected, tests in (("", "c", CORE_TESTS), ("1", "python", CORE_TESTS)) + (
            (("", "c", PROCESS_TESTS),) if newest else ()
        ):
            env = {**os.environ, "TRACEDFUTURE_PURE_PYTHON": pure}
            which = background.run(
                [python_in_venv, "-c", "import tracedfuture; print(tracedfuture.IMPLEMENTATION)"],
                cwd=root,
                env=env,
                timeout=120,
            )
            suite = background.run(
                [python_in_venv, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={tmp}/t", *tests],
                cwd=root,
                env=env,
                timeout=1800,
            )
            runs.append((f"{expected}, reported as {which.stdout.strip() or which.stderr[-500:]}", suite))
        return runs


_NEWEST = max(INTERPRETERS, key=lambda v: tuple(map(int, v.split("."))), default=None)
for _version, _python in INTERPRETERS.items():
    _newest = _version == _NEWEST
    background.job(f"core suite on {_version}", partial(_core_suites_on, _python, _newest), weight=9 if _newest else 5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "version",
    [pytest.param(v, marks=pytest.mark.background(f"core suite on {v}")) for v in sorted(INTERPRETERS)] or ["none"],
)
def test_core_suite_passes_on(version: str) -> None:
    if version == "none":
        pytest.skip("no other CPython 3.11+ on this machine")
    runs = background.result(f"core suite on {version}")
    assert runs[0][0] != "build", runs[0][1].stdout[-4000:] + runs[0][1].stderr[-4000:]
    expected = ["c, reported as c", "python, reported as python"] + ["c, reported as c"] * (version == _NEWEST)
    assert [which for which, _ in runs] == expected
    for which, result in runs:
        assert result.returncode == 0, which + ": " + result.stdout[-4000:] + result.stderr[-2000:]
        assert " passed" in result.stdout.splitlines()[-1]
