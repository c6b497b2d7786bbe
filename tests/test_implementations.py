"""Two implementations of the hot path, one contract: which one runs, the switch
that forces the reference, the silent fallback, and the core suite on the one
this process is not running (the other half of the parametrisation; test_seam.py
runs both in one process)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest

import tracedfuture
from tests import background
from tests.conftest import IN_CI, require

ROOT = Path(__file__).resolve().parent.parent
CORE_TESTS = [
    "tests/test_core_events.py",
    "tests/test_core_compat.py",
    "tests/test_core_install.py",
    "tests/test_cpython_contract.py",
]


def _built() -> bool:
    try:
        from tracedfuture._core import _cfuture  # noqa: F401
    except ImportError:
        return False
    return True


def implementation_in(env: dict[str, str], *code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "; ".join(("import tracedfuture", *code, "print(tracedfuture.IMPLEMENTATION)"))],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_implementation_is_exported_and_names_the_core_in_use() -> None:
    assert "IMPLEMENTATION" in tracedfuture.__all__
    assert tracedfuture.IMPLEMENTATION in ("c", "python")
    expected = "c" if _built() and not os.environ.get("TRACEDFUTURE_PURE_PYTHON") else "python"
    assert expected == tracedfuture.IMPLEMENTATION


def test_the_compiled_core_is_built_by_the_package_build() -> None:
    require(_built(), "the C extension is not built here (pip install -e . builds it where a compiler exists)")
    assert implementation_in({"TRACEDFUTURE_PURE_PYTHON": ""}).stdout == "c\n"


def test_pure_python_variable_forces_the_reference() -> None:
    result = implementation_in({"TRACEDFUTURE_PURE_PYTHON": "1"})
    assert result.stdout == "python\n" and result.stderr == ""


def test_a_missing_extension_falls_back_to_python_silently() -> None:
    block = (
        "import sys, importlib.abc",
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'tracedfuture._core._cfuture':\n"
        "            raise ImportError(name)\n",
    )
    code = (
        "\n".join(block) + "\nsys.meta_path.insert(0, Block())\nimport tracedfuture\nprint(tracedfuture.IMPLEMENTATION)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "TRACEDFUTURE_PURE_PYTHON": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout == "python\n" and result.stderr == ""


def test_version_says_which_core_runs() -> None:
    for env, expected in (({"TRACEDFUTURE_PURE_PYTHON": "1"}, "'python'"), ({}, repr(tracedfuture.IMPLEMENTATION))):
        result = subprocess.run(
            [sys.executable, "-m", "tracedfuture", "--version"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert (
            result.stdout
            == f"tracedfuture {tracedfuture.__version__} "
            + ("(pure-Python core, " if expected == "'python'" else "(compiled core, ")
            + f"tracedfuture.IMPLEMENTATION = {expected})\n"
        )


def test_a_missing_compiled_core_is_named_as_the_reason_the_reference_runs() -> None:
    code = (
        "import sys; sys.modules['tracedfuture._core._cfuture'] = None\n"
        "import tracedfuture._core as core; print(core.IMPLEMENTATION, core.REASON)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "TRACEDFUTURE_PURE_PYTHON": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.startswith("python ")
    assert "compiled core" in result.stdout


@pytest.mark.slow
def _core_suite_on_the_reference() -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="reference-suite-") as tmp:
        return background.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={tmp}/t", *CORE_TESTS],
            cwd=ROOT,
            env={**os.environ, "TRACEDFUTURE_PURE_PYTHON": "1"},
            timeout=1800,
        )


background.job("core suite on the reference", _core_suite_on_the_reference, weight=1.5)


@pytest.mark.background("core suite on the reference")
def test_core_suite_passes_on_the_pure_python_reference_too() -> None:
    """This run uses the compiled core: the same core tests, on the reference
    (run in the background from the end of collection on)."""
    if tracedfuture.IMPLEMENTATION != "c":
        if IN_CI:
            pytest.fail("CI builds the compiled core: this run should use it")
        pytest.skip("this run already uses the pure-Python reference")
    result = background.result("core suite on the reference")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]


@pytest.mark.slow
def test_the_wheel_carries_the_compiled_core_and_the_sdist_its_source(tmp_path: Path) -> None:
    require(_built(), "no compiler here: the wheel would be pure Python")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("tracedfuture-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert [n for n in names if n.startswith("tracedfuture/_core/_cfuture.") and n.endswith(".so")]
    assert "tracedfuture/_views/_report/page.html" in names
    assert "tracedfuture/_control/server.py" in names
    subprocess.run(
        [sys.executable, "-c", "import setuptools.build_meta as b, sys; b.build_sdist(sys.argv[1])", str(tmp_path)],
        cwd=ROOT,
        check=True,
        timeout=600,
        capture_output=True,
    )
    [sdist] = tmp_path.glob("tracedfuture-*.tar.gz")
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    assert any(m.endswith("/tracedfuture/_core/_cfuture.c") for m in members)
    assert any(m.endswith("/setup.py") for m in members)
    # The profile-guided build's two files: without them an install from the sdist builds no profile.
    assert any(m.endswith("/build_pgo.py") for m in members)
    assert any(m.endswith("/pgo_training.py") for m in members)


def test_gcc_builds_the_compiled_core_laid_out_by_a_profile() -> None:
    require(_built(), "no compiler here: only the reference exists")
    sys.path.insert(0, str(ROOT))
    try:
        import build_pgo
    finally:
        sys.path.remove(str(ROOT))
    from tracedfuture._core import _cfuture

    why_not = build_pgo.why_not(shlex.split(sysconfig.get_config_var("CC") or "cc"))
    if why_not is not None:
        pytest.skip(f"the compiled core is built without a profile here: {why_not}")
    assert _cfuture.PROFILE_GUIDED, "built by GCC without a profile: did build_pgo.py's training fail?"


def test_the_compiled_core_loads_without_the_reference() -> None:
    require(_built(), "no compiler here: only the reference exists")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import tracedfuture._core._cfuture, sys; print('tracedfuture._core._future' in sys.modules)",
        ],
        env={k: v for k, v in os.environ.items() if k != "TRACEDFUTURE_PURE_PYTHON"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout == "False\n"


def test_one_rule_says_what_is_asyncios_file() -> None:
    from tracedfuture import _text
    from tracedfuture._core import _frames
    from tracedfuture._pipeline import _convert

    assert _text.is_asyncio is _frames.is_asyncio
    assert _text.is_library is _frames.is_library
    assert _convert.short_asyncio is _frames.short_asyncio
