"""The package's layers, and its public surface, pinned.

The layers (``docs/architecture.md`` draws them): each module may import only
from layers below its own, or from its own folder. ``_core`` knows nothing above
it; the pipeline knows installations only through its ``Consumer`` protocol and
exporters only through their hooks; the viewers never import the pipeline.
Imports under ``if TYPE_CHECKING:`` are for type checkers and do not count.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tracedfuture
from tracedfuture._core._events import Event, is_shutdown_task
from tracedfuture._fold import Fold
from tracedfuture.exporters import MemoryExporter
from tracedfuture.exporters.otel import is_shutdown_task as otel_is_shutdown_task

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A key is a module or a folder of tracedfuture (exporters/ is
# tracedfuture.exporters); a module not listed fails the test, so that a new one
# is placed on purpose.
LAYERS: dict[str, int] = {
    "_version": 0,
    "_files": 0,
    "_core": 0,
    "options": 1,
    "_text": 1,
    "_fold": 2,
    "asgi": 2,
    "_locks": 2,
    "_tracefile": 1,
    "trace": 2,
    "_pipeline": 2,
    "_views": 3,
    "graph": 3,
    "_install": 3,
    "exporters": 4,
    "lints": 4,
    "flight": 4,
    "testing": 5,
    "instrumentation": 5,
    "_control": 5,
    "_startup": 6,
    "_run": 7,
    "pytest_plugin": 7,
    "cli": 8,
    "__init__": 9,
    "__main__": 10,
}


def _unit(module: str) -> str:
    """The LAYERS key of ``tracedfuture.a.b``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / "tracedfuture").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        found[".".join(rel.parts).removesuffix(".__init__")] = path
    for path in sorted((ROOT / "exporters").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        found["tracedfuture." + ".".join(rel.parts).removesuffix(".__init__")] = path
    return found


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of the imports inside ``if TYPE_CHECKING:`` blocks."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                for sub in ast.walk(inner):
                    lines.add(getattr(sub, "lineno", 0))
    return lines


def _imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", 0) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names = [target + "." + a.name for a in node.names] if target == "tracedfuture" else [target]
            out.update(n for n in names if n.startswith("tracedfuture"))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("tracedfuture"))
    return out


def test_every_module_has_a_layer() -> None:
    assert {_unit(m) for m in _modules()} <= set(LAYERS), set(map(_unit, _modules())) - set(LAYERS)


def test_each_layer_imports_only_from_those_below_it() -> None:
    wrong = []
    for module, path in _modules().items():
        unit = _unit(module)
        for target in _imports(module, path):
            other = _unit(target)
            if other == unit:
                continue  # within a folder
            if other not in LAYERS:
                other = "__init__"  # a public name of the package itself
            if LAYERS[other] >= LAYERS[unit]:
                wrong.append(f"{module} imports {target} ({other}: layer {LAYERS[other]} >= {LAYERS[unit]})")
    assert not wrong, "\n".join(wrong)


def test_the_compiled_core_loads_without_the_reference() -> None:
    code = "import tracedfuture._core._cfuture, sys; print('tracedfuture._core._future' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode and "No module named 'tracedfuture._core._cfuture'" in done.stderr:
        pytest.skip("the compiled core is not built here")
    assert (done.stdout, done.stderr) == ("False\n", "")


# --- a light start: each command imports what it needs (issue "Every event out", item 5) ---


def _modules_after(code: str, cwd: Path | None = None, **environ: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEDFUTURE_")} | environ
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=cwd)
    return set(done.stdout.split())


def _modules_before_exec(start: str, cwd: Path) -> set[str]:
    """The modules that ``start`` (code that runs ``tracedfuture run``) imports
    before it would exec the program: os.execve prints them instead."""
    return _modules_after(
        "import os, sys; before = set(sys.modules); "
        "os.execve = lambda *a: (print(*set(sys.modules) - before, flush=True), os._exit(0)); " + start,
        cwd,
    )


def test_importing_the_package_imports_nothing_else() -> None:
    loaded = _modules_after(
        "import sys; before = set(sys.modules); import tracedfuture; print(*set(sys.modules) - before)"
    )
    assert {m for m in loaded if m.startswith("tracedfuture") or m == "asyncio"} == {"tracedfuture"}


def test_run_becomes_the_program_without_importing_asyncio_or_the_viewers() -> None:
    # What the process that execs the program loads (tracedfuture.cli, then run's parser and checks).
    code = (
        "import sys; from tracedfuture import cli, _run; cli._parser(viewers=False); "
        "_run.settings_from_environment({'TRACEDFUTURE_OUTPUT': 't.jsonl'}); print(*sys.modules)"
    )
    loaded = _modules_after(code)
    assert not {m for m in loaded if m == "asyncio" or m.startswith(("tracedfuture._views", "tracedfuture._core"))}


def test_run_reads_its_flags_and_execs_with_the_options_table_alone(tmp_path: Path) -> None:
    # Everything imported before the exec is start-up the program waits for:
    # the common case needs neither argparse (the table reads the flags) nor
    # typing, dataclasses, re or signal. What the interpreter's own start-up
    # (site, an editable install's finder) loaded is not counted.
    loaded = _modules_before_exec(
        "from tracedfuture.cli import main; main(['run', '-o', 't.jsonl', '--tail', '--lints', 'app.py'])", tmp_path
    )
    ours = {m for m in loaded if m.startswith("tracedfuture")}
    assert ours == {
        "tracedfuture",
        "tracedfuture.cli",
        "tracedfuture._run",
        "tracedfuture.options",
    }
    heavy = {"argparse", "typing", "dataclasses", "inspect", "re", "enum", "signal", "shutil", "asyncio", "json"}
    assert not loaded & heavy


def test_python_m_run_execs_without_the_command_line_of_the_viewers(tmp_path: Path) -> None:
    # python -m tracedfuture run: __main__ hands run its arguments without tracedfuture.cli.
    loaded = _modules_before_exec(
        "import runpy; sys.argv = ['tracedfuture', 'run', '-o', 't.jsonl', '--tail', '--lints', 'app.py']; "
        "runpy.run_module('tracedfuture', run_name='__main__', alter_sys=True)",
        tmp_path,
    )
    assert {m for m in loaded if m.startswith("tracedfuture")} == {
        "tracedfuture",
        "tracedfuture._run",
        "tracedfuture.options",
    }
    heavy = {"argparse", "typing", "dataclasses", "inspect", "re", "enum", "signal", "shutil", "asyncio", "json"}
    assert not loaded & heavy


def test_the_start_up_hook_imports_no_viewer_and_no_command_line(tmp_path: Path) -> None:
    code = "import sys; print(*sys.modules)"
    loaded = _modules_after(code, TRACEDFUTURE_OUTPUT=str(tmp_path / "t.jsonl"))
    assert "tracedfuture._startup" in loaded  # the hook ran
    heavy = {"argparse", "difflib", "orjson", "tempfile", "importlib.abc", "tracedfuture.graph", "tracedfuture.flight"}
    assert not {m for m in loaded if m in heavy or m.startswith("tracedfuture._views")}


def test_the_start_up_hook_imports_only_the_parts_its_options_ask_for(tmp_path: Path) -> None:
    # A trace file without tail sampling: the tail's module is not imported, an
    # exporter's hooks are read and the installation keeps its options without
    # generating a dataclass, and the file's lines are written without the trace
    # reader or sysconfig's build configuration, nor events and filters
    # (_delivery, fnmatch). (json is loaded: the lines of failures and cancels
    # need its encoder, and loading it later, on the drain thread of a busy
    # program, stalled the trace file for 0.4 s: _pipeline/_lines.py.)
    code = "import sys; print(*sys.modules)"
    loaded = _modules_after(code, TRACEDFUTURE_OUTPUT=str(tmp_path / "t.jsonl"))
    assert {"tracedfuture._startup", "tracedfuture._pipeline._hooks"} <= loaded  # the hook ran, and read them
    assert "tracedfuture._pipeline._tail" not in loaded
    ours = loaded - _modules_after(code)  # not what the interpreter's start loaded (an editable finder)
    heavy = {"dataclasses", "importlib.util", "fnmatch", "tracedfuture.trace", "tracedfuture.options._options"}
    assert not ours & (heavy | {"tracedfuture._pipeline._delivery"})
    assert not {m for m in ours if m.startswith("_sysconfigdata")}
    tail = _modules_after(code, TRACEDFUTURE_OUTPUT=str(tmp_path / "t.jsonl"), TRACEDFUTURE_TAIL="1")
    assert "tracedfuture._pipeline._tail" in tail


def test_an_exporters_hooks_are_not_a_dataclass() -> None:
    import dataclasses

    from tracedfuture._pipeline._hooks import Hooks

    assert not dataclasses.is_dataclass(Hooks)  # made on the start-up hook's way: see its docstring


# --- the public surface (as trio's test_exports and httpx's test_exported_members) -------

PUBLIC = {
    "tracedfuture": [
        "IMPLEMENTATION",
        "KINDS",
        "Event",
        "Installation",
        "OptionError",
        "Options",
        "Site",
        "TracedFuture",
        "TracedTask",
        "__version__",
        "dump",
        "format_snapshot",
        "future_id",
        "install",
        "loop_factory",
        "run",
        "snapshot",
    ],
    "tracedfuture.exporters": [
        "Exporter",
        "ExporterHooks",
        "JsonLinesExporter",
        "MemoryExporter",
        "RawReader",
    ],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_the_public_names_are_exactly_these(module: str) -> None:
    assert sorted(importlib.import_module(module).__all__) == sorted(PUBLIC[module])


def test_public_classes_and_functions_say_where_they_are_imported_from() -> None:
    wrong = {}
    for name in tracedfuture.__all__:
        value = getattr(tracedfuture, name)
        where = getattr(value, "__module__", None)
        if where is None or isinstance(value, str | frozenset | tuple):
            continue
        if name in ("TracedFuture", "TracedTask"):
            expected = ("tracedfuture._core._cfuture", "tracedfuture._core._future", "tracedfuture")
        else:
            expected = ("tracedfuture", "tracedfuture.options", "tracedfuture.graph", "tracedfuture.flight")
        if not where.startswith(expected):
            wrong[name] = where
    assert not wrong


def test_repr_of_public_classes_name_the_package() -> None:
    assert repr(tracedfuture.Installation).startswith("<class 'tracedfuture.Installation'")
    assert repr(tracedfuture.Options).startswith("<class 'tracedfuture.Options'")
    assert repr(tracedfuture.Event).startswith("<class 'tracedfuture.Event'")


# --- one vocabulary ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "loop_factory",
    ["asyncio", "uvloop"],
)
def test_the_viewers_and_the_otel_exporter_agree_on_the_shutdown_tasks(loop_factory: str) -> None:
    if loop_factory == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop

    async def main() -> None:
        await asyncio.sleep(0)

    memory = MemoryExporter()
    with tracedfuture.install(exporters=[memory]), asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
    created = memory.of_kind("created")
    fold = Fold().feed(memory)
    by_fold = {state.id for state in fold.states.values() if state.shutdown_task}
    by_otel = {e.future_id for e in created if otel_is_shutdown_task(e)}
    assert by_fold == by_otel
    assert len(by_fold) == 2, [e.coro for e in created]


def test_a_task_made_inside_a_task_is_never_a_shutdown_task() -> None:
    event = Event("created", 3, 0, task_id=1, is_task=True, coro="Loop.shutdown_asyncgens")
    assert not is_shutdown_task(event.is_task, event.coro, event.task_id)
    assert not otel_is_shutdown_task(event)
