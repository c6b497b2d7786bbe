"""The compiled core, tracedfuture._core._cfuture: optional, so that a machine without a
compiler still installs (tracedfuture then runs its pure-Python reference).

TRACEDFUTURE_STRICT_BUILD=1 (CI, the test suite) builds with -Wall -Werror, and
fails instead of falling back; TRACEDFUTURE_CFLAGS adds flags (benchmarks/asan.sh
builds with AddressSanitizer through it).

The C core reads and extends CPython's own _asyncio structures, which change from
one minor version to the next (see docs/python-versions.md): on a Python it does
not know, the build leaves it out, says so in one line, and the install goes on
with the pure-Python core (``tracedfuture.IMPLEMENTATION == "python"``); so
does a free-threaded build, which the core does not support.
TRACEDFUTURE_BUILD_UNKNOWN=1 tries the build anyway.
"""

import os
import shlex
import sys
import sysconfig

from setuptools import Extension, setup

strict = os.environ.get("TRACEDFUTURE_STRICT_BUILD") == "1"
flags = ["-O2", "-std=c11"] + (["-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror"] if strict else [])
flags += shlex.split(os.environ.get("TRACEDFUTURE_CFLAGS", ""))

# The minor versions whose _asyncio the C core was written against and tested on.
KNOWN = ((3, 11), (3, 12), (3, 13))
free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
known = (sys.version_info[:2] in KNOWN and not free_threaded) or os.environ.get("TRACEDFUTURE_BUILD_UNKNOWN") == "1"
if not known:
    print(
        "tracedfuture: no compiled core for Python {}.{}{} (it knows {}): installing the pure-Python core".format(
            *sys.version_info[:2],
            " free-threaded" if free_threaded else "",
            ", ".join("{}.{}".format(*v) for v in KNOWN),
        ),
        file=sys.stderr,
    )

setup(
    ext_modules=[]
    if not known
    else [
        Extension(
            "tracedfuture._core._cfuture",
            [
                "tracedfuture/_core/_cfuture.c",
                "tracedfuture/_core/_lines.c",
                "tracedfuture/_core/_batch.c",
                "tracedfuture/_core/_eventfold.c",
                "tracedfuture/_core/_tail.c",
                "tracedfuture/_core/_reader.c",
                "tracedfuture/_core/_gil.c",
            ],
            depends=[
                "tracedfuture/_core/_records.h",
                "tracedfuture/_core/_gil.h",
                "tracedfuture/_core/_clock.h",
                "tracedfuture/_core/_asyncio_layout.h",
                "tracedfuture/_core/_frame_layout.h",
            ],
            extra_compile_args=flags,
            extra_link_args=shlex.split(os.environ.get("TRACEDFUTURE_LDFLAGS", "")),
            optional=not strict,
        )
    ]
)
