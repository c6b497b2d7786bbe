"""Safe on a shared machine: what another local user plants, sends or names cannot
make tracedfuture write where it should not, hang, lie, or drive the terminal.

Everything is real: files planted with another owner (``nobody``, by ``chown``;
the tests run as root), FIFOs, symbolic links, a squatted console directory, a
fake server running as ``nobody``, hostile task names, raw bytes on the control
socket. Each test checks the planted thing is unchanged and the program's own
output is what it would have been untraced.
"""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracedfuture._control import console
from tracedfuture._control.server import connect

from ._cli import PY, make_trace, python, tracedfuture, write
from ._targets import Target, target

NOBODY = 65534
KINDS = ("symlink", "foreign-file", "fifo")
APP = 'import asyncio\n\nasync def main():\n    await asyncio.sleep(0)\n    print("hi")\n\nasyncio.run(main())\n'
CONTROL = set(range(0x20)) - {0x0A} | {0x7F} | set(range(0x80, 0xA0))

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="plants files as another uid: needs root")


class Planted:
    """Something another user left at ``path``, and how it was."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path = path
        self.kind = kind
        self.victim = path.parent / f"victim-{path.name}"
        if kind == "symlink":
            self.victim.write_text("root's secret\n")
            os.chmod(self.victim, 0o400)
            path.symlink_to(self.victim)
        elif kind == "foreign-file":
            path.write_text("planted\n")
            os.chmod(path, 0o644)
            os.chown(path, NOBODY, NOBODY)
        else:
            os.mkfifo(path, 0o666)
            os.chown(path, NOBODY, NOBODY)
        self.before = self.state()

    def state(self) -> tuple[object, ...]:
        link = os.lstat(self.path)
        out: tuple[object, ...] = (link.st_mode, link.st_uid, link.st_ino)
        if self.kind == "symlink":
            victim = os.stat(self.victim)
            out += (os.readlink(self.path), victim.st_mode, victim.st_uid, self.victim.read_text())
        elif self.kind == "foreign-file":
            out += (self.path.read_text(),)
        return out

    def unchanged(self) -> bool:
        return self.state() == self.before


def refusal(path: Path | str, kind: str) -> str:
    reason = {
        "symlink": "it is a symbolic link",
        "foreign-file": f"it belongs to uid {NOBODY}, not to us (uid {os.geteuid()})",
        "fifo": "it is a FIFO (named pipe), not a regular file",
    }[kind]
    return f"{path}: {reason} (remove it or choose another path)"


def run_env(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, *args], cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=30, check=False
    )


# --- output files ---------------------------------------------------------------------------


@root_only
@pytest.mark.parametrize("kind", KINDS)
def test_a_planted_trace_path_from_the_environment_is_refused_and_the_program_runs_untraced(
    tmp_path: Path, kind: str
) -> None:
    write(tmp_path / "app.py", APP)
    planted = Planted(tmp_path / "t.jsonl", kind)
    done = run_env(tmp_path, "app.py", TRACEDFUTURE_OUTPUT=str(planted.path))
    assert (done.returncode, done.stdout) == (0, "hi\n")
    assert done.stderr == f"tracedfuture: not writing the trace to {refusal(planted.path, kind)}\n"
    assert planted.unchanged()


@root_only
@pytest.mark.parametrize("kind", KINDS)
def test_a_planted_trace_path_for_run_o_is_refused_and_the_program_runs_untraced(tmp_path: Path, kind: str) -> None:
    write(tmp_path / "app.py", APP)
    planted = Planted(tmp_path / "t.jsonl", kind)
    done = tracedfuture("run", "-o", "t.jsonl", "app.py", cwd=tmp_path, timeout=30)
    assert (done.returncode, done.stdout) == (0, "hi\n")
    assert done.stderr == f"tracedfuture: not writing the trace to {refusal('t.jsonl', kind)}\n"
    assert planted.unchanged()


def test_a_trace_of_ours_is_rewritten_private_and_dev_null_still_works(tmp_path: Path) -> None:
    write(tmp_path / "app.py", APP)
    mine = tmp_path / "t.jsonl"
    mine.write_text("old\n")
    os.chmod(mine, 0o644)
    for destination in (mine, Path(os.devnull)):
        done = tracedfuture("run", "-o", destination, "app.py", cwd=tmp_path, timeout=30)
        assert (done.returncode, done.stdout, done.stderr) == (0, "hi\n", "")
    assert stat.S_IMODE(mine.stat().st_mode) == 0o600
    assert json.loads(mine.read_text().splitlines()[0])["format"] == "tracedfuture-trace"
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


@root_only
@pytest.mark.parametrize("kind", KINDS)
def test_a_planted_flight_dump_path_is_refused_in_one_line(tmp_path: Path, kind: str) -> None:
    write(tmp_path / "app.py", APP)
    planted = Planted(tmp_path / "f.jsonl", kind)
    done = tracedfuture("run", "--flight", "f.jsonl", "app.py", cwd=tmp_path, timeout=30)
    assert (done.returncode, done.stdout) == (0, "hi\n")
    assert done.stderr == f"tracedfuture: not writing the flight recorder's dump to {refusal('f.jsonl', kind)}\n"
    assert planted.unchanged()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def a_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_trace(tmp_path_factory.mktemp("trace"), "app", APP)


@root_only
@pytest.mark.parametrize("viewer", ["html", "perfetto"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_planted_viewer_report_path_is_refused(tmp_path: Path, a_trace: Path, viewer: str, kind: str) -> None:
    planted = Planted(tmp_path / "report", kind)
    done = tracedfuture(viewer, a_trace, "-o", planted.path, timeout=30)
    assert done.returncode == 2
    assert done.stderr == f"tracedfuture {viewer}: error: not writing {refusal(planted.path, kind)}\n"
    assert planted.unchanged()


@pytest.mark.parametrize("viewer", ["html", "perfetto"])
def test_viewer_reports_are_as_private_as_their_trace(tmp_path: Path, a_trace: Path, viewer: str) -> None:
    report = tmp_path / "report"
    report.write_text("an older report of ours")
    os.chmod(report, 0o644)
    done = tracedfuture(viewer, a_trace, "-o", report, timeout=60)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert report.read_text() != "an older report of ours"


# --- the console: client dumps, squatted directories, fake servers ---------------------------


@root_only
@pytest.mark.parametrize("kind", KINDS)
def test_a_planted_client_dump_path_is_refused(tmp_path: Path, kind: str) -> None:
    with target() as running:
        planted = Planted(tmp_path / f"tracedfuture-dump-{running.pid}.jsonl", kind)
        named = Planted(tmp_path / "named.jsonl", kind)
        default = tracedfuture("dump", running.pid, cwd=tmp_path, timeout=30)
        explicit = tracedfuture("dump", running.pid, "-o", named.path, cwd=tmp_path, timeout=30)
    assert default.returncode == explicit.returncode == 2
    assert default.stderr == f"tracedfuture dump: error: not writing {refusal(planted.path.name, kind)}\n"
    assert explicit.stderr == f"tracedfuture dump: error: not writing {refusal(named.path, kind)}\n"
    assert planted.unchanged() and named.unchanged()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@root_only
def test_a_squatted_console_directory_says_console_off_and_the_trace_is_still_written(tmp_path: Path) -> None:
    write(tmp_path / "app.py", APP)
    runtime = Path(tempfile.mkdtemp(prefix="tfs-", dir="/tmp"))
    try:
        squatted = runtime / "tracedfuture"
        squatted.mkdir(mode=0o700)
        os.chown(squatted, NOBODY, NOBODY)
        env = {"XDG_RUNTIME_DIR": str(runtime), "TRACEDFUTURE_OUTPUT": "t.jsonl", "TRACEDFUTURE_CONSOLE": "1"}
        done = run_env(tmp_path, "app.py", **env)
        assert (done.returncode, done.stdout) == (0, "hi\n")
        assert done.stderr == (
            f"tracedfuture: console off: {squatted} belongs to uid {NOBODY}, not to uid 0: the console needs a "
            "directory of its own (uid 0, mode 0700, not a symlink); remove it, or set XDG_RUNTIME_DIR to a "
            "private directory\n"
        )
        assert (tmp_path / "t.jsonl").stat().st_size > 0
        assert list(squatted.iterdir()) == []
    finally:
        os.chown(runtime / "tracedfuture", 0, 0)
        (runtime / "tracedfuture").rmdir()
        runtime.rmdir()


class FakeServer:
    """A Unix socket that greets like a tracedfuture server, with a hostile ``pid``,
    served by a forked child that listens as ``uid`` (``SO_PEERCRED`` says so)."""

    def __init__(self, path: Path, uid: int, hello: dict[str, object]) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        os.chmod(path, 0o666)
        # The child listens once it is uid (SO_PEERCRED reports the listener's
        # credentials at listen()); the parent returns only when it does, or a
        # client on a busy machine would find nobody listening yet.
        ready_r, ready_w = os.pipe()
        self.child = os.fork()
        if self.child == 0:  # pragma: no cover - the child
            try:
                os.close(ready_r)
                os.setgid(uid)
                os.setuid(uid)
                sock.listen(4)
                os.write(ready_w, b"1")
                os.close(ready_w)
                sock.settimeout(10)
                for _ in range(4):
                    conn, _ = sock.accept()
                    conn.sendall(json.dumps(hello).encode() + b"\n")
                    time.sleep(0.2)
                    conn.close()
            finally:
                os._exit(0)
        os.close(ready_w)
        os.read(ready_r, 1)  # listening (or gone: then the test says why)
        os.close(ready_r)
        sock.close()

    def stop(self) -> None:
        os.kill(self.child, 9)
        os.waitpid(self.child, 0)


@pytest.fixture
def victim() -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A process of ours (root) whose runtime directory is private to it."""
    runtime = Path(tempfile.mkdtemp(prefix="tfv-", dir="/tmp"))
    proc = subprocess.Popen(
        [PY, "-c", "import time; time.sleep(60)"], env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    )
    try:
        yield proc, runtime
    finally:
        proc.kill()
        proc.wait()
        subprocess.run(["rm", "-rf", str(runtime)], check=False)


HOSTILE_HELLO = {"version": 1, "server": "tracedfuture-control", "pid": "x/../../planted", "requests": ["dump"]}


@root_only
@pytest.mark.parametrize("owner", ["directory", "server"])
def test_the_client_does_not_talk_to_a_server_it_cannot_trust(
    tmp_path: Path, victim: tuple[subprocess.Popen[bytes], Path], owner: str
) -> None:
    proc, runtime = victim
    directory = runtime / "tracedfuture"
    directory.mkdir(mode=0o700)
    if owner == "directory":  # squatted: nobody's directory, nobody's server
        os.chown(directory, NOBODY, NOBODY)
    server = FakeServer(directory / f"{proc.pid}.sock", NOBODY, HOSTILE_HELLO)
    try:
        done = tracedfuture("dump", proc.pid, cwd=tmp_path, timeout=30)
    finally:
        server.stop()
    assert done.returncode == 2
    if owner == "directory":
        assert f"not connecting through a directory that is not private: {directory} belongs to uid {NOBODY}" in (
            done.stderr
        )
    else:
        assert f"not connecting: the server runs as uid {NOBODY}, not as the process's user (uid 0)" in done.stderr
    assert list(tmp_path.iterdir()) == []
    assert not (tmp_path.parent / "planted").exists()


@root_only
@pytest.mark.parametrize("pid", ["x/../../planted", 1])
def test_dump_file_names_never_come_from_the_server(
    tmp_path: Path, victim: tuple[subprocess.Popen[bytes], Path], pid: object
) -> None:
    proc, runtime = victim
    directory = runtime / "tracedfuture"
    directory.mkdir(mode=0o700)
    # Our own uid and a private directory: trusted enough to talk to; its text is not.
    server = FakeServer(directory / f"{proc.pid}.sock", 0, {**HOSTILE_HELLO, "pid": pid})
    try:
        done = tracedfuture("dump", proc.pid, cwd=tmp_path, timeout=30)
    finally:
        server.stop()
    assert done.returncode == 2
    if isinstance(pid, int):
        assert f"the server answered for process 1, not {proc.pid}" in done.stderr
    else:
        assert "is not a tracedfuture control socket (its pid is not a number: 'x/../../planted')" in done.stderr
    assert list(tmp_path.iterdir()) == []
    assert not (tmp_path.parent / "planted").exists()


# --- terminal escapes ---------------------------------------------------------------------------

EVIL = "evil\x1b]0;PWNED\x07\x1b[2J\x9b31m\rhome"
HOSTILE_PROGRAM = f"""
import asyncio

async def main():
    forever = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(asyncio.wait_for(forever, None), name={EVIL!r})
    await asyncio.sleep(0)
    print("serving", flush=True)
    await task

asyncio.run(main())
"""


def raw_controls(text: str) -> set[str]:
    return {char for char in text if ord(char) in CONTROL}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    program = write(tmp_path_factory.mktemp("hostile") / "hostile.py", HOSTILE_PROGRAM)
    with target(program) as running:
        yield running


@pytest.mark.parametrize("command", ["ps", "pstree", "top"])
def test_hostile_task_names_reach_the_terminal_escaped(hostile: Target, command: str) -> None:
    done = tracedfuture(command, hostile.pid, timeout=30)
    assert done.returncode == 0, done.stderr
    assert raw_controls(done.stdout) == set(), repr(done.stdout)
    assert "evil\\x1b]0;PWNED\\x07\\x1b[2J\\x9b31m\\rhome" in done.stdout


def test_top_renders_hostile_names_escaped_in_the_table_and_the_detail_view(hostile: Target) -> None:
    pytest.importorskip("rich")
    from rich.console import Console

    with connect(hostile.pid) as client:
        state = console._Console(client, str(hostile.pid), 1.0)
        state.refresh(time.monotonic())
        outputs = []
        for detail in (None, next(f["id"] for f in state.snap["futures"] if "evil" in (f["name"] or ""))):  # type: ignore[index]
            state.detail = detail
            state.refresh(time.monotonic() + 10)
            screen = Console(file=io.StringIO(), width=200, force_terminal=False, color_system=None)
            screen.print(console._render(state, 40))
            outputs.append(screen.file.getvalue())
    for text in outputs:
        assert "evil\\x1b]0;PWNED" in text
        assert raw_controls(text) == set(), repr(text)


# --- what listeners accept ----------------------------------------------------------------------


def _lines(sock: socket.socket, count: int) -> list[dict[str, object]]:
    reader = sock.makefile("rb")
    return [json.loads(reader.readline()) for _ in range(count)]


def test_nested_and_oversized_requests_get_an_error_reply_and_no_traceback() -> None:
    with target() as running:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(running.socket))
            reader = sock.makefile("rb")
            assert json.loads(reader.readline())["server"] == "tracedfuture-control"
            sock.sendall(b"[" * 60_000 + b"\n")
            assert json.loads(reader.readline())["error"] == "a request nests at most 32 levels deep"
            sock.sendall(b'{"version": 1, "request": "hello", "x": ' + b"[" * 40 + b"]" * 40 + b"}\n")
            assert "nests at most" in json.loads(reader.readline())["error"]
            sock.sendall(b'{"version": 1, "request": "hello"}\n')
            assert json.loads(reader.readline())["ok"] is True
            sock.sendall(b"x" * 70_000 + b"\n")
            assert json.loads(reader.readline())["error"] == "request longer than 65536 bytes"
        running.proc.send_signal(2)
        running.proc.wait(15)
        assert running.proc.stderr is not None
        assert "Traceback" not in running.proc.stderr.read()


def test_tcp_clients_without_a_token_get_two_seconds_and_never_crowd_out_the_unix_socket() -> None:
    with target(tcp=0) as running:
        info = json.loads(running.socket.with_suffix(".tcp").read_text())
        host, port = info["address"].split(":")
        idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(20)]
        try:
            started = time.monotonic()
            ps = tracedfuture("ps", running.pid, timeout=30)
            assert ps.returncode == 0, ps.stderr
            assert "worker-a" in ps.stdout
            for sock in idle[:16]:
                reader = sock.makefile("rb")
                reader.readline()  # the greeting
                assert reader.readline() == b""  # closed: no token in time
            assert time.monotonic() - started < 8
            for payload in ('{"token": "\u00e9\u00e9"}', '{"x": ' + "[" * 5000 + "}", '"token": "' + "a" * 500 + '"'):
                with socket.create_connection((host, int(port)), timeout=10) as sock:
                    reader = sock.makefile("rb")
                    reader.readline()
                    sock.sendall(payload.encode() + b"\n")
                    assert "a valid 'token' is required" in json.loads(reader.readline())["error"]
        finally:
            for sock in idle:
                sock.close()
        running.proc.send_signal(2)
        running.proc.wait(15)
        assert running.proc.stderr is not None
        assert "Traceback" not in running.proc.stderr.read()


# --- python -I / -E -------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["-I", "-E"])
def test_python_isolated_or_ignoring_the_environment_is_left_alone(tmp_path: Path, flag: str) -> None:
    write(tmp_path / "app.py", APP)
    env = {"TRACEDFUTURE_LINTS": "bogus", "TRACEDFUTURE_OUTPUT": "t.jsonl"}
    done = run_env(tmp_path, flag, "app.py", **env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "hi\n", "")
    assert not (tmp_path / "t.jsonl").exists()
    assert python("app.py", cwd=tmp_path).stdout == "hi\n"


def test_run_still_traces_and_says_why_it_cannot_under_minus_i(tmp_path: Path) -> None:
    write(tmp_path / "app.py", APP)
    done = tracedfuture("run", "-o", "t.jsonl", "app.py", cwd=tmp_path, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (0, "hi\n", "")
    assert (tmp_path / "t.jsonl").exists()
    isolated = subprocess.run(
        [PY, "-I", "-m", "tracedfuture", "run", "-o", "u.jsonl", "app.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert isolated.returncode == 2
    assert "python -E and -I ignore: run without -E/-I" in isolated.stderr
