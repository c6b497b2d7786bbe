"""``python -m tracedfuture``: the same as the ``tracedfuture`` command.

``run`` goes straight to :mod:`tracedfuture._run`, as :func:`tracedfuture.cli.main`
sends it: the process becomes the program, and the viewers' command line is
loaded only when run has something to say (help, an error)."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing's, without importing typing
if TYPE_CHECKING:
    import argparse


def _run_parser() -> argparse.ArgumentParser:
    from .cli import _parser

    return _parser(viewers=False)[1]


if __name__ == "__main__":
    if sys.argv[1:2] == ["run"]:
        import gc

        gc.disable()  # it execs the program: nothing made on the way is worth collecting
        from ._run import run_command

        sys.exit(run_command(sys.argv[2:], _run_parser))
    from .cli import main

    sys.exit(main())
