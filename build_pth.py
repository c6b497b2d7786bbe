"""Build step: ship ``tracedfuture.pth``, the start-up hook, at the top of site-packages.

Python runs the line of every ``.pth`` file in site-packages at start-up (see
:mod:`site`). Ours only looks for a ``TRACEDFUTURE_*`` variable and, if there is
one, imports ``tracedfuture._startup`` (coverage.py's subprocess support works
the same way). A wheel's top-level files land in site-packages, so the file goes
to the top of ``build_lib``; an editable install (PEP 660) builds elsewhere and
puts in its wheel what is in ``install_lib``, so there it goes there.
"""

from __future__ import annotations

import os

from setuptools.command.build_py import build_py as _build_py

PTH = "tracedfuture.pth"
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), PTH)


class build_py(_build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            target_dir = self.get_finalized_command("install").install_lib
        else:
            target_dir = self.build_lib
        if not target_dir:
            msg = f"cannot tell where to put {PTH}: the start-up hook would be missing"
            raise RuntimeError(msg)
        os.makedirs(target_dir, exist_ok=True)
        target = os.path.join(target_dir, PTH)
        self.copy_file(SOURCE, target, preserve_mode=False)
        self._pth = [] if getattr(self, "editable_mode", False) else [target]

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), *getattr(self, "_pth", [])]
