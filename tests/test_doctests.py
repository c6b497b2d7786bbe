"""Every module's examples run, and say what really happens.

The modules are imported by the names users import them by (so the exporters
are ``tracedfuture.exporters.*``, never a top-level ``exporters``), and each
module's docstrings run as one doctest set, in a fresh namespace.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest

import tracedfuture
import tracedfuture.exporters


def _module_names() -> list[str]:
    names = ["tracedfuture", "tracedfuture.exporters"]
    for package in (tracedfuture, tracedfuture.exporters):
        names += [f"{package.__name__}.{info.name}" for info in pkgutil.iter_modules(package.__path__)]
    return sorted(set(names) - {"tracedfuture.__main__"})  # runs the command line when imported


MODULES = _module_names()


def test_the_doctest_set_covers_the_exporters_and_the_core() -> None:
    assert "tracedfuture.exporters.otel" in MODULES
    assert "tracedfuture.exporters.structlog" in MODULES
    assert "tracedfuture._install" in MODULES
    assert "tracedfuture.options" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_module_examples_are_true(name: str) -> None:
    module: ModuleType = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    output: list[str] = []
    for test in finder.find(module, name):  # each in a copy of the module's globals
        runner.run(test, out=output.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(output)
