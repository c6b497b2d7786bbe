"""Slow subprocess suites, started as soon as collection ends and run beside the
main suite, one at a time (the main suite keeps one core; these use the other).

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

_jobs: dict[str, Callable[[], Any]] = {}
_started: dict[str, concurrent.futures.Future[Any]] = {}
_queue: list[str] = []
_lock = threading.Lock()
_processes: set[subprocess.Popen[str]] = set()
_ending = threading.Event()
_worker: threading.Thread | None = None


def job(key: str, fn: Callable[[], Any]) -> None:
    """Declare the job ``key``: ``fn()`` runs in the background, once."""
    _jobs[key] = fn


def start(key: str) -> None:
    global _worker
    with _lock:
        if key in _started:
            return
        _started[key] = concurrent.futures.Future()
        _queue.append(key)
        if _worker is None:
            _worker = threading.Thread(target=_work, name="background suites", daemon=True)
            _worker.start()


def _work() -> None:
    while not _ending.is_set():
        with _lock:
            if not _queue:
                return _finish_worker()
            key = _queue.pop(0)
        future = _started[key]
        try:
            future.set_result(_jobs[key]())
        except BaseException as exc:
            future.set_exception(exc)


def _finish_worker() -> None:
    global _worker
    _worker = None  # under _lock: the next start() starts another


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
