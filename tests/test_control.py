"""The control socket and the commands that use it, against real running processes.

Each target is a real process serving its control socket (see ``_targets``):
examples/stuck_service.py keeps a deadlock of two workers running.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import stat
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracedfuture._control.server import PROTOCOL, ControlError, connect
from tracedfuture.trace import read as read_trace

from ._targets import PY, ROOT, STUCK, Target, line_of, target, tracedfuture

SITE = "examples/stuck_service.py"


@pytest.fixture(scope="module")
def stuck() -> Iterator[Target]:
    with target() as running:
        yield running


def test_socket_is_0600_in_a_0700_directory_named_by_pid(stuck: Target) -> None:
    info = os.lstat(stuck.socket)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    directory = os.lstat(stuck.socket.parent)
    assert stat.S_IMODE(directory.st_mode) == 0o700
    assert directory.st_uid == os.geteuid() == info.st_uid
    assert stuck.socket.name == f"{stuck.pid}.sock"


def test_pstree_shows_the_chain_from_the_waiting_task_to_the_leaf_future_with_its_site(stuck: Target) -> None:
    result = tracedfuture("pstree", stuck.pid)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    lock_a = line_of(STUCK, "lock_a: asyncio.Future[str] = loop.create_future()")
    lock_b = line_of(STUCK, "lock_b: asyncio.Future[str] = loop.create_future()")
    await_line = line_of(STUCK, "await theirs")
    for worker, lock in (("worker-a", lock_b), ("worker-b", lock_a)):
        pattern = (
            rf"\(T\) #\d+ {worker}  transfer\(\)  pending [\d.]+s  created at {SITE}:\d+ in main.*\n"
            rf".*└── transfer {SITE}:{await_line}\n"
            rf".*└── \(F\) #\d+  pending [\d.]+s  created at {SITE}:{lock} in main"
        )
        assert re.search(pattern, out), out
    assert "request-17  handle_request()" in out
    assert re.search(r"^\d+ pending: \d+ tasks, \d+ futures$", out.splitlines()[0])


def test_ps_lists_the_tasks_with_their_names(stuck: Target) -> None:
    result = tracedfuture("ps", stuck.pid)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATE", "AGE", "WOKE", "AWAITS", "SITE"]
    names = {line.split()[1] for line in lines[1:] if line.strip() and line.split()[0].lstrip("!").isdigit()}
    assert {"Task-1", "worker-a", "worker-b", "request-17", "heartbeat"} <= names
    worker = next(line for line in lines if " worker-a " in line)
    assert "transfer()" in worker and "pending" in worker and f"{SITE}:" in worker
    assert re.search(r"\(F\) #\d+", worker)
    assert re.search(r"^5 pending tasks, \d+ pending futures$", lines[lines.index("") + 1])


def test_ps_json_is_the_snapshot_reply(stuck: Target) -> None:
    result = tracedfuture("ps", stuck.pid, "--json")
    data = json.loads(result.stdout)
    workers = {f["name"]: f for f in data["snapshot"]["futures"] if f["task"]}
    assert workers["worker-a"]["coro"] == "transfer"
    assert workers["worker-a"]["stack"][0]["function"] == "transfer"
    assert workers["worker-a"]["parent_id"] == workers["Task-1"]["id"]
    [loop] = data["snapshot"]["loops"]
    assert loop["answered"] and loop["thread_name"] == "MainThread"
    beat = workers["heartbeat"]
    assert beat["woke_ns"] is not None and beat["woke_ns"] < 5e9


def test_lints_name_the_stalled_chains(stuck: Target) -> None:
    with connect(stuck.pid) as client:
        lints = client.request("lints", stall=0.2)
        snap = client.request("snapshot")
    names = {f["id"]: f["name"] for f in snap["futures"]}
    stalled = [f for f in lints["current"] if f["kind"] == "stalled"]
    chains = {names[f["chain"][0]] for f in stalled}
    assert {"worker-a", "worker-b"} <= chains
    assert all("created at" in f["text"] for f in stalled)


def test_dump_writes_a_trace_file_that_tree_reads(stuck: Target, tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    result = tracedfuture("dump", stuck.pid, "-o", path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"wrote {path} (")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    trace = read_trace(path)
    assert trace.header["pid"] == stuck.pid
    assert trace.header["flight"] == "control socket"
    assert "worker-a" in {e.name for e in trace.events}
    tree = tracedfuture("tree", path, "--pending")
    assert tree.returncode == 0, tree.stderr
    assert re.search(r"task worker-a #\d+ \(transfer\)\s+pending", tree.stdout), tree.stdout
    assert re.search(rf"future #\d+\s+pending .* {SITE}:\d+ in main", tree.stdout), tree.stdout


def test_top_without_a_terminal_prints_one_plain_snapshot(stuck: Target) -> None:
    result = tracedfuture("top", stuck.pid)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split()[:2] == ["ID", "NAME"]
    assert "worker-b" in result.stdout
    assert "\x1b" not in result.stdout


def test_events_of_one_task(stuck: Target) -> None:
    with connect(stuck.pid) as client:
        snap = client.request("snapshot")
        worker = next(f for f in snap["futures"] if f["name"] == "worker-a")
        events = client.request("events", future_id=worker["id"], limit=50)["events"]
    kinds = [e["kind"] for e in events if e["future_id"] == worker["id"]]
    assert kinds[0] == "created"
    assert any(e["kind"] == "awaited" and e["awaiter_id"] == worker["id"] for e in events)


def test_counters(stuck: Target) -> None:
    with connect(stuck.pid) as client:
        counters = client.request("counters")
    assert counters["flight"]["records"] > 0
    assert counters["recorder"]["records"] > 0
    assert counters["loops"] == 1
    assert counters["control"]["connections"] >= 1


# --- the protocol --------------------------------------------------------------------------


def _raw(path: Path) -> tuple[socket.socket, Iterator[dict[str, object]]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    reader = sock.makefile("rb")

    def replies() -> Iterator[dict[str, object]]:
        while line := reader.readline():
            yield json.loads(line)

    return sock, replies()


def test_protocol_greets_with_its_version_and_requests(stuck: Target) -> None:
    sock, replies = _raw(stuck.socket)
    with sock:
        hello = next(replies)
    assert hello["version"] == PROTOCOL == 1
    assert hello["server"] == "tracedfuture-control"
    assert hello["pid"] == stuck.pid
    assert hello["allow_cancel"] is False
    assert hello["requests"] == ["hello", "snapshot", "events", "lints", "counters", "dump"]


@pytest.mark.parametrize(
    ("request_line", "error"),
    [
        (b"print('hi')\n", "not a JSON line"),
        (b"[1, 2]\n", "a request is a JSON object"),
        (b'{"request": "snapshot"}\n', "protocol version None is not spoken here: this process speaks version 1"),
        (b'{"version": 2, "request": "snapshot"}\n', "protocol version 2 is not spoken here"),
        (b'{"version": 1, "request": "exec", "code": "import os"}\n', "unknown request 'exec': one of hello, "),
        (b'{"version": 1, "request": "events", "limit": "all"}\n', "limit must be an integer from 1 to 10000"),
        (b'{"version": 1, "request": "cancel", "id": 4}\n', "cancel is not allowed"),
        (b'{"version": 1, "request": "dump", "to": "/etc/passwd"}\n', "dump's 'to' may only be 'flight'"),
    ],
)
def test_protocol_refuses_what_is_not_a_known_request(stuck: Target, request_line: bytes, error: str) -> None:
    sock, replies = _raw(stuck.socket)
    with sock:
        next(replies)
        sock.sendall(request_line)
        reply = next(replies)
        assert reply["ok"] is False
        assert error in str(reply["error"])
        # The connection still serves.
        sock.sendall(b'{"version": 1, "request": "hello"}\n')
        assert next(replies)["ok"] is True


def test_protocol_closes_on_an_overlong_request(stuck: Target) -> None:
    sock, replies = _raw(stuck.socket)
    with sock:
        next(replies)
        sock.sendall(b'{"version": 1, "request": "hello", "pad": "' + b"x" * 70_000 + b'"}\n')
        reply = next(replies)
        assert reply["ok"] is False and "longer than 65536 bytes" in str(reply["error"])
        assert next(replies, None) is None


# --- errors the commands report ------------------------------------------------------------


def _one_line_error(result: subprocess.CompletedProcess[str], command: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"tracedfuture {command}: error: ")
    return lines[0]


def test_a_dead_pid_is_one_line_and_exit_2() -> None:
    gone = subprocess.Popen([PY, "-c", "pass"])
    gone.wait()
    for command in ("ps", "pstree", "dump", "top"):
        line = _one_line_error(tracedfuture(command, gone.pid), command)
        assert line.endswith(f"no process {gone.pid} is running")


def test_a_process_without_a_socket_is_one_line_naming_the_fix() -> None:
    line = _one_line_error(tracedfuture("ps", os.getpid()), "ps")
    assert f"process {os.getpid()} has no control socket" in line
    assert "tracedfuture run --console" in line


def test_a_stale_socket_is_one_line(tmp_path: Path) -> None:
    path = Path("/tmp") / f"tfc-stale-{os.getpid()}.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.close()  # the file stays, nobody listens: a process killed with SIGKILL
    try:
        line = _one_line_error(tracedfuture("pstree", path), "pstree")
        assert "nobody is listening" in line
    finally:
        path.unlink()


def test_the_socket_is_removed_when_the_process_exits() -> None:
    with target(STUCK, "0.5") as running:
        assert running.proc.wait(30) == 0
        assert not running.socket.exists()
        line = _one_line_error(tracedfuture("ps", running.pid), "ps")
        assert "no process" in line


# --- permissions ---------------------------------------------------------------------------

NOBODY = 65534


def _as_nobody(path: Path) -> str:
    """Connect to ``path`` from a forked child running as ``nobody``; what it got."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.close(read)
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                with connect(str(path), timeout=5) as client:
                    outcome = f"connected {client.hello}"
            except ControlError as exc:
                outcome = f"refused {exc}"
            os.write(write, outcome.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        outcome = pipe.read().decode()
    os.waitpid(child, 0)
    return outcome


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another uid (nobody)")
def test_a_second_uid_cannot_connect(stuck: Target) -> None:
    outcome = _as_nobody(stuck.socket)
    assert outcome.startswith("refused "), outcome
    assert "permission denied" in outcome


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another uid (nobody)")
def test_peer_credentials_refuse_a_second_uid_even_when_the_files_let_it_in(stuck: Target) -> None:
    # Open the directory and the socket to everyone: the server's own check remains.
    directories = [stuck.runtime, stuck.socket.parent]
    modes = [stat.S_IMODE(os.stat(d).st_mode) for d in directories]
    try:
        for directory in directories:
            os.chmod(directory, 0o711)
        os.chmod(stuck.socket, 0o666)
        outcome = _as_nobody(stuck.socket)
    finally:
        os.chmod(stuck.socket, 0o600)
        for directory, mode in zip(directories, modes, strict=True):
            os.chmod(directory, mode)
    assert outcome.startswith("refused "), outcome
    assert f"permission denied: uid {NOBODY} is neither this process's user (uid 0) nor root" in outcome


# --- cancel, blocked loops, several loops, fork, TCP -------------------------------------------


def test_cancel_runs_on_the_tasks_loop_when_allowed() -> None:
    with target(allow_cancel=True) as running, connect(running.pid) as client:
        assert "cancel" in client.hello["requests"]
        snap = client.request("snapshot")
        worker = next(f for f in snap["futures"] if f["name"] == "worker-a")
        assert client.request("cancel", id=worker["id"], msg="from the test") == {
            "id": worker["id"],
            "cancelled": True,
        }
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            names = {f["name"] for f in client.request("snapshot")["futures"]}
            if "worker-a" not in names and "request-17" not in names:  # it awaited worker-a: it ends a step later
                break
            time.sleep(0.05)
        assert "worker-a" not in names and "request-17" not in names
        assert "worker-b" in names
        cancelled = client.request("events", future_id=worker["id"], kinds=["cancelled"])["events"]
        assert cancelled[-1]["msg"] == "from the test"
        with pytest.raises(ControlError, match=r"cancel: no pending task #999999"):
            client.request("cancel", id=999999)


BLOCKING = """\
import asyncio, time

def block_forever():
    time.sleep(600)  # a blocking call on the loop's thread

async def main():
    loop = asyncio.get_running_loop()
    sleeper = asyncio.create_task(asyncio.sleep(600), name="sleeper")
    await asyncio.sleep(0.05)
    print("serving", flush=True)
    loop.call_soon(block_forever)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_answers_while_the_loop_is_blocked_with_the_loop_threads_stack(tmp_path: Path) -> None:
    program = tmp_path / "blocking.py"
    program.write_text(BLOCKING)
    with target(program) as running:
        time.sleep(0.3)
        started = time.monotonic()
        result = tracedfuture("pstree", running.pid)
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started < 30
        with connect(running.pid) as client:  # asked again: still blocked, still answered
            for _ in range(3):
                [loop] = client.request("snapshot")["loops"]
                assert loop["running"] and not loop["answered"]
    out = result.stdout
    assert "(T) #" in out and "sleeper" in out
    assert "did not answer within 0.5 s: it is blocked, here:" in out
    assert re.search(r"block_forever .*blocking.py:4", out), out


SEVERAL_LOOPS = """\
import asyncio, threading
import tracedfuture
import uvloop

ready = threading.Event()
KEEP = []  # tasks nobody references are collected (abandoned), as asyncio documents

async def wait_here(name):
    await asyncio.get_running_loop().create_future()

def other_thread():
    async def main():
        KEEP.append(asyncio.create_task(wait_here("u"), name="on-uvloop"))
        await asyncio.sleep(0)
        ready.set()
        await asyncio.sleep(600)
    with asyncio.Runner(loop_factory=tracedfuture.loop_factory(base=uvloop.new_event_loop)) as runner:
        runner.run(main())

async def main():
    KEEP.append(asyncio.create_task(wait_here("a"), name="on-asyncio"))
    threading.Thread(target=other_thread, daemon=True, name="uvloop-thread").start()
    await asyncio.to_thread(ready.wait)
    print("serving", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_several_loops_in_several_threads_uvloop_included(tmp_path: Path) -> None:
    pytest.importorskip("uvloop")
    program = tmp_path / "loops.py"
    program.write_text(SEVERAL_LOOPS)
    with target(program) as running, connect(running.pid) as client:
        snap = client.request("snapshot")
    loops = {loop["thread_name"]: loop for loop in snap["loops"]}
    assert loops["MainThread"]["answered"] and loops["uvloop-thread"]["answered"]
    assert loops["uvloop-thread"]["class"] != loops["MainThread"]["class"]
    tasks = {f["name"]: f for f in snap["futures"] if f["task"]}
    for name, thread in (("on-asyncio", "MainThread"), ("on-uvloop", "uvloop-thread")):
        assert tasks[name]["stack"] and tasks[name]["stack"][0]["function"] == "wait_here", (name, snap)
        assert tasks[name]["thread_id"] == loops[thread]["thread_id"]
        [leaf] = tasks[name]["awaiting"]
        assert next(f for f in snap["futures"] if f["id"] == leaf)["awaited_by"] == [tasks[name]["id"]]


FORKING = """\
import asyncio, os, sys, time

child = os.fork()
if child == 0:
    time.sleep(1.0)
    sys.exit(0)  # a normal exit, through atexit: it must leave the parent's socket alone

async def main():
    print(f"serving {child}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, os.waitpid, child, 0)
    print("child gone", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_a_forked_child_neither_serves_nor_removes_the_parents_socket(tmp_path: Path) -> None:
    program = tmp_path / "forking.py"
    program.write_text(FORKING)
    with target(program) as running:
        assert running.proc.stdout is not None
        for _ in range(10):
            with connect(running.pid) as client:
                assert client.hello["pid"] == running.pid
        assert select.select([running.proc.stdout], [], [], 30)[0], "the child did not exit"
        assert running.proc.stdout.readline().strip() == "child gone"
        assert running.socket.exists()
        with connect(running.pid) as client:
            assert client.hello["pid"] == running.pid


def test_tcp_is_off_unless_asked_and_then_needs_the_token(stuck: Target) -> None:
    assert not stuck.socket.with_suffix(".tcp").exists()
    with target(tcp=0) as running:
        token_file = running.socket.with_suffix(".tcp")
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        info = json.loads(token_file.read_text())
        host, port = info["address"].split(":")
        assert host == "127.0.0.1"
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            reader = sock.makefile("rb")
            assert json.loads(reader.readline()) == {"version": 1, "server": "tracedfuture-control", "auth": "token"}
            sock.sendall(b'{"version": 1, "request": "snapshot", "token": "wrong"}\n')
            assert "a valid 'token' is required" in json.loads(reader.readline())["error"]
            assert reader.readline() == b""
        env = {**os.environ, "TRACEDFUTURE_CONSOLE_TOKEN": info["token"]}
        result = subprocess.run(
            [PY, "-m", "tracedfuture", "ps", info["address"]],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "worker-a" in result.stdout


def test_import_tracedfuture_and_its_cli_stay_stdlib_only() -> None:
    code = "import sys, tracedfuture, tracedfuture.cli, tracedfuture._control.server; print('rich' in sys.modules)"
    result = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"


def test_start_refuses_a_directory_that_is_not_private(tmp_path: Path) -> None:
    runtime = Path(os.path.realpath(tmp_path))
    shared = Path("/tmp") / f"tfc-shared-{os.getpid()}"
    shared.mkdir(mode=0o755)
    try:
        os.chmod(shared, 0o755)
        code = textwrap.dedent(
            """
            import os, tracedfuture._control.server as control
            try:
                control.start()
            except RuntimeError as exc:
                print(exc)
            """
        )
        (runtime / "tracedfuture").symlink_to(shared)
        os.chmod(runtime, 0o700)
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
        result = subprocess.run(
            [PY, "-c", code], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT, check=False
        )
        assert f"{runtime}/tracedfuture is a symbolic link: the console needs a directory of its own" in result.stdout
        assert f"(uid {os.geteuid()}, mode 0700, not a symlink)" in result.stdout
        assert not list(shared.iterdir())
    finally:
        shared.rmdir()


def test_dump_to_flight_writes_the_recorders_own_path_in_the_process(tmp_path: Path) -> None:
    with target(STUCK, cwd=tmp_path) as running, connect(running.pid) as client:
        path = Path(client.request("dump", to="flight")["path"])
    assert path == tmp_path / f"tracedfuture-flight-{running.pid}.jsonl"
    assert "worker-b" in {e.name for e in read_trace(path).events}


LOCK_DEADLOCK = """\
import asyncio

async def transfer(mine, theirs):
    async with mine:  # HELD
        await asyncio.sleep(0.05)
        async with theirs:  # WAITS
            pass

async def main():
    one, two = asyncio.Lock(), asyncio.Lock()
    tasks = [asyncio.create_task(transfer(one, two), name="worker-a"),
             asyncio.create_task(transfer(two, one), name="worker-b")]
    await asyncio.sleep(0.2)
    print("serving", flush=True)
    await asyncio.gather(*tasks)

asyncio.run(main())
"""


def test_pstree_ps_and_top_say_a_lock_deadlock_in_one_paragraph(tmp_path: Path) -> None:
    program = tmp_path / "locks.py"
    program.write_text(LOCK_DEADLOCK)
    held, waits = line_of(program, "# HELD"), line_of(program, "# WAITS")
    with target(program) as running:
        tree, ps, top = (tracedfuture(command, running.pid) for command in ("pstree", "ps", "top"))
        whole = tracedfuture("pstree", "--all-frames", running.pid)
    paragraph = re.compile(
        rf"deadlock: worker-(a|b) holds Lock#\d+ \(acquired at .*locks.py:{held}\) and waits for Lock#\d+ "
        rf"\(.*locks.py:{waits}\), held by worker-(a|b) \(acquired at .*locks.py:{held}\), "
        rf"which waits for Lock#\d+ \(.*locks.py:{waits}\)"
    )
    for result in (tree, ps, top):
        assert result.returncode == 0, result.stderr
        assert paragraph.search(result.stdout), result.stdout
    assert re.search(rf"worker-a  transfer\(\) .* holds Lock#\d+ \(acquired at .*locks.py:{held}\)", tree.stdout)
    assert "library frames, down to Lock.acquire asyncio/locks.py" in tree.stdout
    assert "_ContextManagerMixin.__aenter__" in whole.stdout
    created = line_of(program, 'name="worker-a"')
    assert re.search(rf"worker-a transfer\(\) .*locks.py:{created} in main", ps.stdout), ps.stdout


# A real uvicorn serving the shop (examples/shop.py) under ``tracedfuture run
# --console``, on the port the test gives it.
SHOP_SERVER = f"""\
import asyncio, sys
sys.path.insert(0, {str(ROOT / "examples")!r})
import uvicorn
from shop import app


async def main():
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="critical"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    print("serving", flush=True)
    await serving


asyncio.run(main())
"""


def _get(port: int, path: str, timeout: float = 30) -> int:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:  # the deadlocked transfers never answer
        return 0
    finally:
        connection.close()


@pytest.fixture(scope="module")
def shop_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """The shop, once its two transfers deadlock: /transfer/a/b and /transfer/b/a at once."""
    import threading

    for needed in ("uvicorn", "fastapi"):
        pytest.importorskip(needed)
    program = tmp_path_factory.mktemp("shop") / "shop_server.py"
    program.write_text(SHOP_SERVER)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with target(program, str(port)) as running:
        assert _get(port, "/items/1") == 200 and _get(port, "/fail") == 500
        for path in ("/transfer/a/b", "/transfer/b/a"):
            threading.Thread(target=_get, args=(port, path), daemon=True).start()
        deadline = time.monotonic() + 30
        while "deadlock: " not in tracedfuture("pstree", running.pid).stdout:
            assert time.monotonic() < deadline, "the transfers did not deadlock"
            time.sleep(0.2)
        yield running


def test_pstree_of_a_server_opens_on_its_requests_with_the_background_folded(shop_server: Target) -> None:
    done = tracedfuture("pstree", shop_server.pid)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("deadlock: GET /transfer/{first}/{second} holds Lock#")  # the paragraph stays first
    roots = [line for line in lines if line.startswith(("├── ", "└── "))]
    assert len(roots) == 3, done.stdout
    assert all("GET /transfer/{first}/{second}" in line for line in roots[:2])
    assert "pool keep-alive" in roots[2]  # the program's own task: after the requests, not folded
    (background,) = [line for line in lines if line.startswith("background: ")]
    assert "Server.serve() #" in background and "LifespanOn.main() #" in background and "main() #1" in background
    assert background.endswith("folded: --all shows them")
    assert "LifespanOn.receive" not in done.stdout and "Server.main_loop" not in done.stdout
    every = tracedfuture("pstree", "--all", shop_server.pid).stdout
    assert "background: " not in every and "LifespanOn.main()" in every and "Server.main_loop" in every
    tops = [line for line in every.splitlines() if line.startswith(("├── ", "└── "))]
    assert all("GET /transfer" in line for line in tops[:2])  # requests still first, the background after them
    assert any("LifespanOn.main()" in line for line in tops[3:])


def test_ps_of_a_server_lists_its_requests_and_never_flags_the_lifespan(shop_server: Target) -> None:
    done = tracedfuture("ps", shop_server.pid)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "GET /transfer/{first}/{second}" in lines[1] and "GET /transfer/{first}/{second}" in lines[2]
    assert "LifespanOn" not in "\n".join(lines[: lines.index("")])  # left out, and never a stall
    assert any(line.startswith("background: ") and "LifespanOn.main()" in line for line in lines)
    assert "LifespanOn" not in "\n".join(line for line in lines if line.startswith("  stalled"))
    every = tracedfuture("ps", "--all", shop_server.pid).stdout
    listed = every.splitlines()
    table = listed[: listed.index("")]
    assert any("LifespanOn.main()" in line and not line.startswith("!") for line in table)
    assert "GET /transfer" in table[1]
    with connect(shop_server.pid) as client:
        current = [finding["text"] for finding in client.request("lints", stall=0.2)["current"]]
    assert sum("GET /transfer/{first}/{second} -> (F)" in text for text in current) == 2, current
    assert not [text for text in current if "LifespanOn" in text or "main_loop" in text], current


def test_top_of_a_server_folds_its_background_until_a_is_pressed(shop_server: Target) -> None:
    pytest.importorskip("rich")
    import io

    from rich.console import Console

    from tracedfuture._control import console

    def screen(state: console._Console) -> str:
        out = Console(file=io.StringIO(), width=220, force_terminal=False, color_system=None)
        out.print(console._render(state, 40))
        return out.file.getvalue()  # type: ignore[attr-defined, no-any-return]

    with connect(shop_server.pid) as client:
        state = console._Console(client, str(shop_server.pid), 1.0)
        state.refresh(time.monotonic())
        names = [row.name for row in state.visible()]
        assert names[:2] == ["GET /transfer/{first}/{second} RequestResponseCycle.run_asgi()"] * 2
        assert not any("LifespanOn" in name for name in names)
        folded = screen(state)
        assert "background tasks folded (a shows them)" in folded and "LifespanOn" not in folded
        state.key("a", page=10)
        names = [row.name for row in state.visible()]
        assert names[:2] == ["GET /transfer/{first}/{second} RequestResponseCycle.run_asgi()"] * 2
        assert any("LifespanOn.main()" in name for name in names[2:])
        assert "LifespanOn.main()" in screen(state)
