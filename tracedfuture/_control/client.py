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
import struct
from collections.abc import Iterator
from typing import Any, BinaryIO, Protocol

from .._text import printable

__all__ = ["Client", "ControlError", "connect", "line", "socket_dir"]

PROTOCOL = 1


class _Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


class ControlError(Exception):
    """A control socket that cannot be reached or refused a request: one line."""


def _not_private(path: str, uid: int) -> str | None:
    """What keeps ``path`` from being a private directory of ``uid`` (a real
    directory, not a link, that nobody else may enter), or ``None``."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        return f"cannot be examined ({exc.strerror or exc})"
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != uid:
        return f"belongs to uid {info.st_uid}, not to uid {uid}"
    if info.st_mode & 0o077:
        return f"has mode {stat.S_IMODE(info.st_mode):04o}, not 0700"
    return None


def _private_dir(path: str, uid: int) -> bool:
    """Whether ``path`` is a real directory (not a link) of ``uid`` that nobody else may enter."""
    return _not_private(path, uid) is None


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
            msg = f"{where}: {printable(str(self.hello.get('error')))}"
            raise ControlError(msg)
        if self.hello.get("server") != "tracedfuture-control":
            msg = f"{where} is not a tracedfuture control socket"
            raise ControlError(msg)
        if token is not None:
            self.hello = self.request("hello")
        pid = self.hello.get("pid", 0)
        if "pid" in self.hello and (isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0):
            msg = f"{where} is not a tracedfuture control socket (its pid is not a number: {printable(repr(pid))[:40]})"
            raise ControlError(msg)

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
            msg = f"{name}: {printable(str(reply.get('error', 'refused')))}"
            raise ControlError(msg)
        result: dict[str, Any] = reply.get("result", {})
        return result

    def dump(self, out: _Writable) -> tuple[int, int]:
        """Stream the flight recorder's dump into ``out``: ``(lines, bytes)``."""
        result = self.request("dump")
        lines, size = result.get("lines"), result.get("bytes")
        if not (isinstance(lines, int) and isinstance(size, int) and lines >= 0 and size >= 0):
            msg = f"{self.where}: not a tracedfuture control socket (its dump reply has no sizes)"
            raise ControlError(msg)
        remaining = size
        while remaining > 0:
            chunk = self.reader.read(min(remaining, 1 << 16))
            if not chunk:
                msg = f"{self.where}: the dump stopped after {size - remaining} of {size} bytes"
                raise ControlError(msg)
            out.write(chunk)
            remaining -= len(chunk)
        return lines, size


def _process_uid(pid: int) -> int | None:
    """The uid that process ``pid`` runs as (the owner of ``/proc/<pid>``), or ``None``."""
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _candidates(pid: int, uid: int) -> Iterator[str]:
    """Where process ``pid`` of ``uid`` may listen: its own ``XDG_RUNTIME_DIR``
    (read from /proc when allowed), ours, its user's default runtime dir, then /tmp."""
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
    ``127.0.0.1:PORT`` (TCP; the token from ``TRACEDFUTURE_CONSOLE_TOKEN``).

    For a PID, nothing is taken on trust: the socket's directory must be private
    (mode 0700, not a link) to the process's user or ours, the server's peer
    credentials must be the process's user or root, and its ``hello`` must name
    that very pid.
    """
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
    uid = _process_uid(pid)
    owners = {os.geteuid()} if uid is None else {uid, os.geteuid()}
    tried = list(_candidates(pid, os.geteuid() if uid is None else uid))
    hidden = None
    distrusted: list[str] = []
    for path in tried:
        directory = os.path.dirname(path)
        try:
            os.lstat(directory)
        except PermissionError:
            hidden = hidden or path
            continue
        except OSError:
            continue
        problems = [_not_private(directory, owner) for owner in sorted(owners)]
        if all(problems):
            distrusted.append(f"{directory} {problems[0]}")
            continue
        try:
            os.lstat(path)
        except PermissionError:
            hidden = hidden or path
            continue
        except OSError:
            continue
        client = _connect_unix(path, f"process {pid} ({path})", timeout, peer_uids=owners | {0})
        got = client.hello.get("pid")
        if got != pid:
            client.close()
            msg = f"process {pid} ({path}): the server answered for process {printable(repr(got))[:40]}, not {pid}"
            raise ControlError(msg)
        return client
    if distrusted:
        msg = (
            f"process {pid}: not connecting through a directory that is not private: {'; '.join(distrusted)} "
            "(someone else may have created it: remove it, and restart the process)"
        )
        raise ControlError(msg)
    if hidden is not None:
        msg = f"process {pid}: permission denied on {os.path.dirname(hidden)}: run as the process's user or root"
        raise ControlError(msg)
    msg = (
        f"process {pid} has no control socket (looked for {', '.join(tried)}): start it with "
        "'tracedfuture run --console', TRACEDFUTURE_CONSOLE=1, or tracedfuture._control.server.start()"
    )
    raise ControlError(msg)


def _server_uid(sock: socket.socket) -> int | None:
    """The uid of the process listening on a connected Unix socket (``SO_PEERCRED``)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def _connect_unix(path: str, where: str, timeout: float, *, peer_uids: set[int] | None = None) -> Client:
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
    if peer_uids is not None:
        uid = _server_uid(sock)
        if uid is not None and uid not in peer_uids:
            sock.close()
            allowed = " or ".join(f"uid {u}" for u in sorted(peer_uids))
            msg = f"{where}: not connecting: the server runs as uid {uid}, not as the process's user ({allowed})"
            raise ControlError(msg)
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
