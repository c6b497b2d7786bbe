"""The package as users get it: wheel layout, import path, public surface."""

from __future__ import annotations

import stat
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

import tracedfuture
import tracedfuture.exporters

ROOT = Path(__file__).resolve().parent.parent


def test_public_surface_is_exactly_all() -> None:
    assert len(set(tracedfuture.__all__)) == len(tracedfuture.__all__)
    for name in tracedfuture.__all__:  # each is imported when first used (PEP 562)
        getattr(tracedfuture, name)
    assert set(dir(tracedfuture)) >= set(tracedfuture.__all__)
    public = {name for name in vars(tracedfuture) if not name.startswith("_")} - {"annotations"}
    modules = {name for name in public if type(getattr(tracedfuture, name)).__name__ == "module"}
    assert public - modules == set(tracedfuture.__all__) - {"__version__"}
    for name in tracedfuture.__all__:
        assert getattr(tracedfuture, name) is not None


def test_exporters_surface() -> None:
    assert set(tracedfuture.exporters.__all__) == {
        "Exporter",
        "ExporterHooks",
        "JsonLinesExporter",
        "MemoryExporter",
        "RawReader",
    }
    assert tracedfuture.exporters.__name__ == "tracedfuture.exporters"


@pytest.mark.slow
def test_wheel_installs_exporters_only_as_tracedfuture_exporters(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("tracedfuture-*.whl")
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    exporters = {p.name for p in (ROOT / "exporters").glob("*.py")}
    assert {
        n.removeprefix("tracedfuture/exporters/") for n in names if n.startswith("tracedfuture/exporters/")
    } == exporters
    assert "tracedfuture/py.typed" in names
    assert not [n for n in names if n.startswith(("exporters/", "tests/", "examples/", "benchmarks/"))]
    assert not [i.filename for i in archive.infolist() if stat.S_ISLNK(i.external_attr >> 16)]
    [license_file] = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert archive.read(license_file) == (ROOT / "LICENSE").read_bytes()
    [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
    headers = archive.read(metadata).decode().split("\n\n", 1)[0].splitlines()
    assert "License-Expression: MIT" in headers
    assert "License-File: LICENSE" in headers
    tools = [h for h in headers if h.startswith(("Requires-Dist: ruff", "Requires-Dist: mypy"))]
    assert tools == ['Requires-Dist: ruff==0.17.6; extra == "dev"', 'Requires-Dist: mypy==2.4.1; extra == "dev"']

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, timeout=300)
    code = (
        "import tracedfuture, tracedfuture.exporters, importlib.util, asyncio\n"
        "from tracedfuture.exporters import MemoryExporter\n"
        "m = MemoryExporter()\n"
        "tracedfuture.run(asyncio.sleep(0), exporters=[m])\n"
        "print(tracedfuture.exporters.__file__.endswith('tracedfuture/exporters/__init__.py'),"
        " importlib.util.find_spec('exporters') is None, m.kinds()[0])"
    )
    out = subprocess.run([python, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["True", "True", "created"]


def test_the_sources_have_no_symlink_and_exporters_only_at_the_top() -> None:
    # A symlink breaks Windows checkouts and shows IDEs and coverage two copies.
    for top in ("tracedfuture", "exporters", "tests", "examples", "benchmarks", "docs"):
        assert not [p for p in (ROOT / top).rglob("*") if p.is_symlink()], top
    assert not (ROOT / "tracedfuture" / "exporters").exists()
    assert (ROOT / "exporters" / "__init__.py").is_file()


def test_exporters_import_the_core_absolutely() -> None:
    # mypy checks exporters/ where it sits, as the package `exporters`; a relative
    # import of the core (from .._events) would not resolve there.
    for path in (ROOT / "exporters").glob("*.py"):
        assert "from .." not in path.read_text(), path


def test_license_is_declared_and_developer_tools_are_pinned_outside_the_user_extras() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    extras = project["optional-dependencies"]
    for name, requirements in extras.items():
        if name != "dev":
            assert not [r for r in requirements if r.startswith(("ruff", "mypy"))], name
    assert sorted(r.split("==")[0] for r in extras["dev"] if "==" in r) == ["mypy", "ruff"]


def test_the_exporters_imported_are_the_files_at_the_top() -> None:
    import tracedfuture.exporters.jsonl

    assert Path(tracedfuture.exporters.__file__).resolve() == ROOT / "exporters" / "__init__.py"
    assert Path(tracedfuture.exporters.jsonl.__file__).resolve() == ROOT / "exporters" / "jsonl.py"


@pytest.mark.slow
def test_an_editable_install_in_a_fresh_environment_finds_the_exporters(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = [python, "-m", "pip", "install", "-q", "--no-deps", "-e", str(ROOT)]
    subprocess.run(install, check=True, timeout=300, capture_output=True)
    code = (
        "import tracedfuture.exporters, tracedfuture.exporters.jsonl, importlib.util\n"
        "print(tracedfuture.exporters.__file__, tracedfuture.exporters.jsonl.__file__,"
        " importlib.util.find_spec('exporters') is None)"
    )
    out = subprocess.run([python, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True, timeout=120)
    init, jsonl, no_top_level = out.stdout.split()
    assert Path(init) == ROOT / "exporters" / "__init__.py"
    assert Path(jsonl) == ROOT / "exporters" / "jsonl.py"
    assert no_top_level == "True"
