"""The compiled core, tracedfuture._core._cfuture: optional, so that a machine without a
compiler still installs (tracedfuture then runs its pure-Python reference).

TRACEDFUTURE_STRICT_BUILD=1 (CI, the test suite) builds with -Wall -Werror, and
fails instead of falling back; TRACEDFUTURE_CFLAGS adds flags (benchmarks/asan.sh
builds with AddressSanitizer through it).
"""

import os
import shlex

from setuptools import Extension, setup

strict = os.environ.get("TRACEDFUTURE_STRICT_BUILD") == "1"
flags = ["-O2", "-std=c11"] + (["-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror"] if strict else [])
flags += shlex.split(os.environ.get("TRACEDFUTURE_CFLAGS", ""))

setup(
    ext_modules=[
        Extension(
            "tracedfuture._core._cfuture",
            [
                "tracedfuture/_core/_cfuture.c",
                "tracedfuture/_core/_lines.c",
                "tracedfuture/_core/_batch.c",
                "tracedfuture/_core/_eventfold.c",
            ],
            depends=["tracedfuture/_core/_records.h"],
            extra_compile_args=flags,
            extra_link_args=shlex.split(os.environ.get("TRACEDFUTURE_LDFLAGS", "")),
            optional=not strict,
        )
    ]
)
