"""Build step: the compiled core, built twice, the second time laid out by a profile.

The hot path's cost is mostly not instructions but where they lie: a traced
task's step runs CPython's interpreter, asyncio's module and ours one after the
other, and every cache line of our code it passes is one the interpreter's loop
loses (10,000 tasks x 10 futures under cachegrind, flight recorder: +1,100
instruction-cache misses a task against plain asyncio, 1,050 of them in our
code). With GCC, the core is therefore built as CPython's ``--enable-optimizations``
builds the interpreter: first with counters (``-fprofile-generate``), then run
on a training program (``pgo_training.py``: futures and tasks on an asyncio
loop under the flight recorder, sampled out, into a MemoryExporter, a trace
file and tail sampling, and the file read back), then built again with
what it counted (``-fprofile-use``), so that the paths the training takes are
laid out together and the rest moved aside. ``-fprofile-partial-training``
keeps code the training never ran optimized as usual, not as cold.

The second build is the same code: only its layout, inlining and branch order
change, and both implementations' tests run on it. The profile is made afresh
by every build (counters are specific to the compiler and the source) and
thrown away with its temporary directory.

It is skipped, and the core built once as before, with another compiler than
GCC, when ``TRACEDFUTURE_CFLAGS`` asks for a build of its own (the sanitizer
build of tests/asan.sh), or with ``TRACEDFUTURE_PGO=0``. When a step fails, the
core is built once without a profile and one line says why; a strict build
(``TRACEDFUTURE_STRICT_BUILD=1``: CI, the test suite) fails instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from setuptools.command.build_ext import build_ext as _build_ext
from setuptools.modified import newer_group

ROOT = os.path.dirname(os.path.abspath(__file__))
TRAINING_TIMEOUT = 300.0


def why_not(command: list[str] | None) -> str | None:
    """Why a build with this compiler command takes no profile, or None."""
    if os.environ.get("TRACEDFUTURE_PGO") == "0":
        return "TRACEDFUTURE_PGO=0"
    if os.environ.get("TRACEDFUTURE_CFLAGS"):
        return "TRACEDFUTURE_CFLAGS asks for a build of its own"
    if not command:
        return "not a Unix compiler"
    try:
        version = subprocess.run(
            [command[0], "--version"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return f"{command[0]} --version failed"
    if "Free Software Foundation" not in version or "clang" in version.lower():
        return f"{command[0]} is not GCC"
    return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1]}" if text else type(exc).__name__


class build_ext(_build_ext):
    def build_extension(self, ext: Any) -> None:
        if why_not(getattr(self.compiler, "compiler_so", None)) is not None:
            super().build_extension(ext)
            return
        if not self.force and not newer_group([*ext.sources, *ext.depends], self.get_ext_fullpath(ext.name)):
            return  # up to date, as setuptools' own build_ext would leave it
        compile_args, link_args, force = list(ext.extra_compile_args), list(ext.extra_link_args), bool(self.force)
        try:
            with tempfile.TemporaryDirectory(prefix="tracedfuture-pgo-") as scratch:
                profile = os.path.join(scratch, "profile")
                self.force = True  # every object again, with counters and then with the profile
                ext.extra_compile_args = [*compile_args, f"-fprofile-generate={profile}", "-fprofile-update=single"]
                ext.extra_link_args = [*link_args, "-fprofile-generate"]
                super().build_extension(ext)
                _train(self.get_ext_fullpath(ext.name), os.path.join(scratch, "stage"))
                ext.extra_compile_args = [
                    *compile_args,
                    f"-fprofile-use={profile}",
                    "-DTRACEDFUTURE_PROFILE_GUIDED=1",
                    "-fprofile-partial-training",
                    "-fprofile-correction",  # the drain thread's counts race the program's
                    "-Wno-missing-profile",
                ]
                ext.extra_link_args = link_args
                super().build_extension(ext)
        except Exception as exc:
            if not ext.optional:  # a strict build (setup.py): its failures are not fallen back from
                raise
            print(
                f"tracedfuture: the profile-guided build failed ({_one_line(exc)}): "
                "building the compiled core without a profile",
                file=sys.stderr,
            )
            ext.extra_compile_args, ext.extra_link_args = compile_args, link_args
            super().build_extension(ext)
        finally:
            ext.extra_compile_args, ext.extra_link_args, self.force = compile_args, link_args, force


def _train(built: str, stage: str) -> None:
    """Run the training program on the instrumented core: a copy of the package's
    sources with the core just built, in a child of this Python."""
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyd")
    shutil.copytree(os.path.join(ROOT, "tracedfuture"), os.path.join(stage, "tracedfuture"), ignore=ignore)
    shutil.copytree(os.path.join(ROOT, "exporters"), os.path.join(stage, "tracedfuture", "exporters"), ignore=ignore)
    shutil.copy2(built, os.path.join(stage, "tracedfuture", "_core", os.path.basename(built)))
    done = subprocess.run(
        [sys.executable, "-I", os.path.join(ROOT, "pgo_training.py"), stage],
        # the core's choice (TRACEDFUTURE_PURE_PYTHON, _CLOCK, _ASYNCIO_STEP) is not the build's
        env={k: v for k, v in os.environ.items() if not k.startswith("TRACEDFUTURE_")},
        capture_output=True,
        text=True,
        timeout=TRAINING_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}").splitlines()[-1]
        msg = f"the training program failed: {last}"
        raise RuntimeError(msg)
