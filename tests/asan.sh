#!/usr/bin/env bash
# The core tests once with the compiled core built under AddressSanitizer and
# UndefinedBehaviorSanitizer (gcc's runtimes, preloaded: CPython itself is not
# instrumented). Leak detection is off: CPython keeps its own allocations to exit.
#
#   tests/asan.sh [pytest arguments]     # default: the core tests
#
# Rebuilds tracedfuture/_cfuture*.so in place; `pip install -e .` restores the
# normal build afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
TRACEDFUTURE_STRICT_BUILD=1 TRACEDFUTURE_CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
  TRACEDFUTURE_LDFLAGS="-fsanitize=address,undefined" \
  "$PY" setup.py -q build_ext --inplace --force --build-temp build/asan
preload="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
if [ $# -eq 0 ]; then
  set -- tests/test_seam.py tests/test_core_events.py tests/test_core_compat.py tests/test_core_install.py tests/test_cpython_contract.py
fi
# Child processes (the tests start some) inherit the preload and the options.
LD_PRELOAD="$preload" ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  PYTHONMALLOC=malloc "$PY" -m pytest -q -p no:cacheprovider "$@"
