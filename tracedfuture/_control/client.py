"""The client side of the control socket: find a process's socket, connect, ask.

>>> from tracedfuture._control.client import connect
>>> with connect(4242) as client:  # doctest: +SKIP
...     print(len(client.request("snapshot")["futures"]))

The protocol is in docs/cli.md ("The control protocol"); the server is
``tracedfuture._control.server``. Every failure is a :class:`ControlError` whose message
is one line for a person: no such process, no socket, a refusal, a lost connection.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
from collections.abc import Iterator
from typing import Any, BinaryIO

__all__ = ["Client", "ControlError", "connect", "line", "socket_dir"]

PROTOCOL = 1


class ControlError(Exception):
    """A control socket that cannot be reached or refused a request: one line."""


def _private_dir(path: str, uid: int) -> bool:
    """Whether ``path`` is a real directory (not a link) of ``uid`` that nobody else may enter."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == uid and not info.st_mode & 0o077


def socket_dir(uid: int | None = None, environ: dict[str, str] | None = None) -> str:
    """The directory of ``uid``'s control sockets (default: this process's user).

    >>> import os
    >>> socket_dir(1000, {})
    '/tmp/tracedfuture-1000'
    """
    if uid is None:
        uid = os.geteuid()
    if environ is None:
        environ = dict(os.environ)
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and _private_dir(runtime, uid):
        return os.path.join(runtime, "tracedfuture")
    return f"/tmp/tracedfuture-{uid}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def line(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


# --- the client ----------------------------------------------------------------------------


class Client:
    """A connection to a control socket: :meth:`request` sends one request and
    returns its ``result``; a refusal raises :class:`ControlError`."""

    def __init__(self, sock: socket.socket, where: str, token: str | None = None) -> None:
        self.sock = sock
        self.where = where
        self.reader: BinaryIO = sock.makefile("rb")
        self.token = token
        self.hello = self._read()
        if not self.hello.get("ok", True):
            msg = f"{where}: {self.hello.get('error')}"
            raise ControlError(msg)
        if self.hello.get("server") != "tracedfuture-control":
            msg = f"{where} is not a tracedfuture control socket"
            raise ControlError(msg)
        if token is not None:
            self.hello = self.request("hello")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.reader.close()
            self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read(self) -> dict[str, Any]:
        try:
            raw = self.reader.readline()
        except OSError as exc:
            msg = f"{self.where}: connection lost ({exc.strerror or exc})"
            raise ControlError(msg) from None
        if not raw:
            msg = f"{self.where}: the process closed the connection (it exited?)"
            raise ControlError(msg)
        try:
            message = json.loads(raw)
        except ValueError:
            msg = f"{self.where}: not a tracedfuture control socket (it sent {raw[:60]!r})"
            raise ControlError(msg) from None
        if not isinstance(message, dict):
            msg = f"{self.where}: not a tracedfuture control socket"
            raise ControlError(msg)
        return message

    def _send(self, name: str, params: dict[str, Any]) -> None:
        message = {"version": PROTOCOL, "request": name, **params}
        if self.token is not None:
            message["token"] = self.token
        try:
            self.sock.sendall(line(message))
        except OSError as exc:
            msg = f"{self.where}: connection lost ({exc.strerror or exc}); the process exited?"
            raise ControlError(msg) from None

    def request(self, name: str, **params: Any) -> dict[str, Any]:
        self._send(name, params)
        reply = self._read()
        if not reply.get("ok"):
            msg = f"{name}: {reply.get('error', 'refused')}"
            raise ControlError(msg)
        result: dict[str, Any] = reply.get("result", {})
        return result

    def dump(self, out: BinaryIO) -> tuple[int, int]:
        """Stream the flight recorder's dump into ``out``: ``(lines, bytes)``."""
        result = self.request("dump")
        lines, size = int(result["lines"]), int(result["bytes"])
        remaining = size
        while remaining > 0:
            chunk = self.reader.read(min(remaining, 1 << 16))
            if not chunk:
                msg = f"{self.where}: the dump stopped after {size - remaining} of {size} bytes"
                raise ControlError(msg)
            out.write(chunk)
            remaining -= len(chunk)
        return lines, size


def _candidates(pid: int) -> Iterator[str]:
    """Where process ``pid`` may listen: its own ``XDG_RUNTIME_DIR`` (read from
    /proc when allowed), ours, its user's default runtime dir, then /tmp."""
    try:
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        uid = os.geteuid()
    seen: set[str] = set()
    environs: list[dict[str, str]] = []
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            pairs = (item.partition(b"=") for item in handle.read().split(b"\0") if b"=" in item)
            environs.append({k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs})
    except OSError:
        pass
    environs += [dict(os.environ), {"XDG_RUNTIME_DIR": f"/run/user/{uid}"}, {}]
    for environ in environs:
        path = os.path.join(socket_dir(uid, environ), f"{pid}.sock")
        if path not in seen:
            seen.add(path)
            yield path


def connect(target: str | int, *, timeout: float = 10.0) -> Client:
    """Connect to a process's control socket: a PID, a socket path, or
    ``127.0.0.1:PORT`` (TCP; the token from ``TRACEDFUTURE_CONSOLE_TOKEN``)."""
    text = str(target)
    if text.isdigit():
        return _connect_pid(int(text), timeout)
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and not os.path.exists(text):
        return _connect_tcp(host, int(port), timeout)
    return _connect_unix(text, text, timeout)


def _connect_pid(pid: int, timeout: float) -> Client:
    if not _pid_alive(pid):
        msg = f"no process {pid} is running"
        raise ControlError(msg)
    tried = list(_candidates(pid))
    hidden = None
    for path in tried:
        try:
            os.stat(path)
        except PermissionError:
            hidden = hidden or path
            continue
        except OSError:
            continue
        return _connect_unix(path, f"process {pid} ({path})", timeout)
    if hidden is not None:
        msg = f"process {pid}: permission denied on {os.path.dirname(hidden)}: run as the process's user or root"
        raise ControlError(msg)
    msg = (
        f"process {pid} has no control socket (looked for {', '.join(tried)}): start it with "
        "'tracedfuture run --console', TRACEDFUTURE_CONSOLE=1, or tracedfuture._control.server.start()"
    )
    raise ControlError(msg)


def _connect_unix(path: str, where: str, timeout: float) -> Client:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EACCES, errno.EPERM):
            msg = f"{where}: permission denied: run as the process's user or root"
            raise ControlError(msg) from None
        if exc.errno == errno.ECONNREFUSED:
            msg = f"{where}: nobody is listening: the process exited, or stopped serving"
            raise ControlError(msg) from None
        if exc.errno == errno.ENOENT:
            msg = f"{where}: no such socket"
            raise ControlError(msg) from None
        msg = f"{where}: cannot connect: {exc.strerror or exc}"
        raise ControlError(msg) from None
    return _client(sock, where, None)


def _connect_tcp(host: str, port: int, timeout: float) -> Client:
    token = os.environ.get("TRACEDFUTURE_CONSOLE_TOKEN")
    if not token:
        msg = f"{host}:{port}: TCP needs the token: set TRACEDFUTURE_CONSOLE_TOKEN (from <pid>.tcp)"
        raise ControlError(msg)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        msg = f"{host}:{port}: cannot connect: {exc.strerror or exc}"
        raise ControlError(msg) from None
    return _client(sock, f"{host}:{port}", token)


def _client(sock: socket.socket, where: str, token: str | None) -> Client:
    try:
        return Client(sock, where, token)
    except TimeoutError:
        sock.close()
        msg = f"{where}: no answer (the process is not a tracedfuture control server?)"
        raise ControlError(msg) from None
    except BaseException:
        sock.close()
        raise
