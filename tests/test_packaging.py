"""The package as users get it: wheel layout, import path, public surface."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

import tracedfuture
import tracedfuture.exporters

ROOT = Path(__file__).resolve().parent.parent


def test_public_surface_is_exactly_all() -> None:
    assert len(set(tracedfuture.__all__)) == len(tracedfuture.__all__)
    public = {name for name in vars(tracedfuture) if not name.startswith("_")} - {"annotations"}
    modules = {name for name in public if type(getattr(tracedfuture, name)).__name__ == "module"}
    assert public - modules == set(tracedfuture.__all__) - {"__version__"}
    for name in tracedfuture.__all__:
        assert getattr(tracedfuture, name) is not None


def test_exporters_surface() -> None:
    assert set(tracedfuture.exporters.__all__) == {"Exporter", "JsonLinesExporter", "MemoryExporter"}
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
    names = zipfile.ZipFile(wheel).namelist()
    assert "tracedfuture/exporters/__init__.py" in names
    assert "tracedfuture/exporters/otel.py" in names
    assert "tracedfuture/py.typed" in names
    assert not [n for n in names if n.startswith(("exporters/", "tests/", "examples/", "benchmarks/"))]

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
