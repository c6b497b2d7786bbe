"""Slow subprocess suites, started as soon as collection ends and run beside the
main suite, two at a time, the heaviest first (the suite's wall time is the
longer of the main suite and these).

A test module declares a job with :func:`job` at import; a test marked
``@pytest.mark.background("key")`` gets it started when collection ends (only if
the test was selected) and waits for its result with :func:`result`. Jobs run in
daemon threads; their processes go through :func:`run`, so that the end of the
session kills whatever is still running (``-x``, Ctrl-C), instead of waiting.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import threading
from collections.abc import Callable
from typing import Any

WORKERS = 2
_jobs: dict[str, tuple[Callable[[], Any], float]] = {}
_started: dict[str, concurrent.futures.Future[Any]] = {}
_queue: list[str] = []
_lock = threading.Lock()
_processes: set[subprocess.Popen[str]] = set()
_ending = threading.Event()
_workers = 0


def job(key: str, fn: Callable[[], Any], weight: float = 1.0) -> None:
    """Declare the job ``key``: ``fn()`` runs in the background, once; heavier
    jobs (``weight``, roughly minutes) start first."""
    _jobs[key] = (fn, weight)


def start(*keys: str) -> None:
    """Queue the jobs ``keys`` (those not started yet), heaviest first, and make
    sure that workers run them."""
    global _workers
    with _lock:
        for key in keys:
            if key not in _started:
                _started[key] = concurrent.futures.Future()
                _queue.append(key)
        _queue.sort(key=lambda k: _jobs[k][1], reverse=True)
        while _workers < min(WORKERS, len(_queue)):
            _workers += 1
            threading.Thread(target=_work, name="background suites", daemon=True).start()


def _work() -> None:
    global _workers
    while not _ending.is_set():
        with _lock:
            if not _queue:
                _workers -= 1
                return
            key = _queue.pop(0)
        future = _started[key]
        try:
            future.set_result(_jobs[key][0]())
        except BaseException as exc:
            future.set_exception(exc)


def result(key: str, timeout: float = 3600) -> Any:
    """The job's result (starting it now if collection did not), or its exception."""
    start(key)
    return _started[key].result(timeout=timeout)


def run(command: list[str], *, timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """subprocess.run(command, capture_output=True, text=True, check=False),
    killed at the session's end if it is still running."""
    if _ending.is_set():
        raise RuntimeError("the test session has ended")
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs) as process:
        _processes.add(process)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            stderr += f"\n[killed after {timeout} s]"
        finally:
            _processes.discard(process)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def end() -> None:
    """Stop: kill what still runs and start nothing more."""
    _ending.set()
    for process in list(_processes):
        process.kill()
