"""An HTTP/1.1 keep-alive server on asyncio streams, loaded by ``wrk`` on 127.0.0.1.

Each request awaits a future resolved through ``call_soon``, a ``sleep(0)`` and a
``gather`` of three tiny coroutines, then answers ``200 ok``. The server runs in
a process of its own (``--serve``), traced process-wide for asyncio
(``tracedfuture.install``) and through ``tracedfuture.loop_factory`` for uvloop:

* ``plain``: untraced;
* ``flight``: into a ``FlightRecorder()`` with its defaults;
* ``export``: every event delivered to an exporter that only counts them;
* ``jsonl``: every event to a trace file (``JsonLinesExporter``, what
  ``tracedfuture run -o`` writes), in a temporary folder.

``measure()`` starts a server of each variant, warms each up, then runs ``wrk``
against them in turn for a few rounds, reading each server's CPU time from
``/proc``: throughput, p99 latency and CPU per request.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = ("plain", "flight", "export", "jsonl")
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class Counter:
    """An exporter that only counts: what delivering every event costs, alone."""

    def __init__(self) -> None:
        self.events = 0

    def export(self, events: Sequence[Any], /) -> None:
        self.events += len(events)


async def tiny(i: int) -> int:
    return i


async def answer() -> None:
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.call_soon(fut.set_result, None)
    await fut
    await asyncio.sleep(0)
    await asyncio.gather(tiny(1), tiny(2), tiny(3))


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                break
            await answer()
            writer.write(RESPONSE)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve() -> None:
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=512)
    port = server.sockets[0].getsockname()[1]
    print(f"LISTENING {port}", flush=True)
    async with server:
        await stop


def serve_main(variant: str, loop_name: str) -> int:
    import tempfile

    import tracedfuture
    from tracedfuture.exporters import JsonLinesExporter
    from tracedfuture.flight import FlightRecorder

    counter = Counter()
    folder = tempfile.TemporaryDirectory(prefix="httpbench-")
    exporters: list[Any] = {
        "plain": [],
        "flight": [FlightRecorder()],
        "export": [counter],
        "jsonl": [JsonLinesExporter(os.path.join(folder.name, "trace.jsonl"))] if variant == "jsonl" else [],
    }[variant]
    base = None
    if loop_name == "uvloop":
        import uvloop

        base = uvloop.new_event_loop
    inst = None
    if variant == "plain":
        factory = base or asyncio.new_event_loop
    elif base is None:
        inst = tracedfuture.install(exporters=exporters)
        factory = asyncio.new_event_loop
    else:
        factory = tracedfuture.loop_factory(base=base, exporters=exporters)
        inst = factory.installation  # type: ignore[attr-defined]
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve())
    if inst is not None:
        inst.flush(timeout=60)
        inst.uninstall()
    events = counter.events
    for exporter in exporters:
        if isinstance(exporter, JsonLinesExporter):
            exporter.shutdown()
            events = exporter.events_written
    folder.cleanup()
    print(json.dumps({"events": events, "implementation": getattr(tracedfuture, "IMPLEMENTATION", "python")}))
    return 0


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        msg = f"unreadable wrk latency {text!r}"
        raise ValueError(msg)
    return float(m.group(1)) * _UNITS[m.group(2)]


class Server:
    """A server child of one variant: started once, loaded by several wrk runs."""

    def __init__(self, python: str, env: dict[str, str], variant: str, loop_name: str) -> None:
        self.variant = variant
        self.error: str | None = None
        self.url = ""
        self.proc = subprocess.Popen(
            [python, os.path.join(HERE, "httpbench.py"), "--serve", variant, loop_name],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("LISTENING "):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=30)
            tail = (err or line).strip().splitlines()[-1:] or ["no output"]
            self.error = f"the server did not start: {tail[0][:300]}"
            return
        self.url = f"http://127.0.0.1:{int(line.split()[1])}/"

    def warm_up(self) -> None:
        """Connections, caches, the first traced futures."""
        if self.error is None:
            subprocess.run(["wrk", "-t1", "-c16", "-d1s", self.url], capture_output=True, timeout=30, check=False)

    def load(self, seconds: int) -> dict[str, Any]:
        """One wrk run: requests/s, p99 in ms, server CPU per request in us."""
        if self.error is not None:
            return {"error": self.error}
        cpu = _cpu_seconds(self.proc.pid)
        wrk = subprocess.run(
            ["wrk", "-t1", "-c16", f"-d{seconds}s", "--latency", self.url],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=False,
        )
        cpu = _cpu_seconds(self.proc.pid) - cpu
        out = wrk.stdout
        requests = re.search(r"(\d+) requests in", out)
        rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
        p99 = re.search(r"^\s*99%\s+(\S+)", out, re.M)
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
        if not (requests and rate and p99) or not int(requests.group(1)):
            return {"error": f"unreadable wrk output: {(out or wrk.stderr).strip()[:200]!r}"}
        result: dict[str, Any] = {
            "requests_per_s": float(rate.group(1)),
            "p99_ms": _ms(p99.group(1)),
            "cpu_us_per_request": cpu / int(requests.group(1)) * 1e6,
        }
        if errors:
            result["wrk_errors"] = errors.group(0)
        return result

    def stop(self) -> dict[str, Any]:
        """Stop the server; what it says at exit (the events counted), or why not."""
        if self.error is not None:
            return {"error": self.error}
        try:
            self.proc.send_signal(signal.SIGTERM)
            stdout, stderr = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return {"error": "the server did not stop within 60 s of SIGTERM"}
        if self.proc.returncode != 0:
            tail = stderr.strip().splitlines()[-1:] or ["no output"]
            return {"error": f"the server exited {self.proc.returncode}: {tail[0][:300]}"}
        summary: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
        if self.variant in ("export", "jsonl") and not summary["events"]:
            return {"error": f"the {self.variant} exporter received no events"}
        return summary

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def measure(
    python: str,
    env: dict[str, str],
    loop_name: str,
    *,
    rounds: int,
    seconds: int,
    warm_up: bool = True,
    time_left: Callable[[], float] = lambda: float("inf"),
) -> dict[str, list[dict[str, Any]]]:
    """Every variant's server at once, wrk runs interleaved between them for
    ``rounds`` rounds (while ``time_left()`` allows another run)."""
    if shutil.which("wrk") is None:
        return {v: [{"error": "wrk not found: apt-get install wrk"}] for v in VARIANTS}
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    servers: list[Server] = []
    try:
        for variant in VARIANTS:
            servers.append(Server(python, env, variant, loop_name))
        if warm_up:
            for server in servers:
                server.warm_up()
        for _ in range(rounds):
            for server in servers:
                if time_left() < seconds + 5:
                    runs[server.variant].append({"error": "not run: its share of the budget was used up"})
                    continue
                runs[server.variant].append(server.load(seconds))
        for server in servers:
            summary = server.stop()
            if "error" in summary:
                runs[server.variant] = [{"error": summary["error"]}]
            elif server.variant in ("export", "jsonl"):
                for run in runs[server.variant]:
                    run["events"] = summary["events"]
    finally:
        for server in servers:
            server.kill()
    return runs


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        raise SystemExit(serve_main(sys.argv[2], sys.argv[3]))
    print(__doc__)
    print(json.dumps(measure(sys.executable, dict(os.environ), "asyncio", rounds=1, seconds=1)))
