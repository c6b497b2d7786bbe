"""The one way tracedfuture creates a file: private, and only where nobody planted anything.

Traces run as root in containers and as many users on shared hosts, often with
an output path in a directory everyone may write (``/tmp``). Whatever is already
at the path may have been put there by someone else, so :func:`create`:

- never follows a symbolic link at the path (``O_NOFOLLOW``), even where the
  kernel's ``protected_symlinks`` is off;
- never writes into a FIFO, a device or a socket (opened with ``O_NONBLOCK`` and
  checked with ``fstat``, so a FIFO cannot hang the program), nor into a file
  someone else owns, nor into a file with other hard links;
- makes every file it creates ``0600``, exclusively (``O_CREAT | O_EXCL``).

A path that cannot be used safely raises :class:`Refused`, whose message names
the path, why, and the fix. ``/dev/null`` is the one exception: it may always be
written (nothing is kept there).

Two ways to write, chosen per writer:

- ``stream=True`` (trace files, written over the program's life and read while it
  runs, ``tail -f``): the file at the path itself. A regular file of ours is
  truncated in place (a rerun of ``-o trace.jsonl``); a missing one is created.
- ``stream=False`` (flight dumps, client dumps, viewer reports, token files): a
  temporary file with an unpredictable name in the same directory, renamed over
  the path by :meth:`Output.close` (a reader never sees half a file; a rename
  replaces a name, it never writes into what the name pointed to).

>>> with create("report.html") as out:  # doctest: +SKIP
...     out.write(b"<html>...")
"""

from __future__ import annotations

import _thread
import errno
import os
import stat
from types import TracebackType

__all__ = ["DropBehind", "Output", "Refused", "create"]

_FLAGS = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _close_quietly(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


class Refused(OSError):
    """A path that tracedfuture will not write: something it did not create is there."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason} (remove it or choose another path)")
        self.path = path
        self.reason = reason

    @property
    def why(self) -> str:
        """The reason and the fix, without the path."""
        return f"{self.reason} (remove it or choose another path)"


def _is_devnull(path: str, info: os.stat_result) -> bool:
    return os.path.abspath(path) == os.devnull and stat.S_ISCHR(info.st_mode)


def _check(path: str, info: os.stat_result, expected: os.stat_result | None = None) -> None:
    """Raise :class:`Refused` unless ``info`` (an ``lstat``/``fstat``) is a
    regular file of ours with no other name. A directory is left to ``open`` to
    report (``IsADirectoryError``), as for any path that cannot be written.
    ``expected``: the ``lstat`` the file opened must still be."""
    if expected is not None and (info.st_dev, info.st_ino) != (expected.st_dev, expected.st_ino):
        raise Refused(path, "it was replaced while it was being opened")
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        raise Refused(path, "it is a symbolic link")
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(21, "Is a directory", path)
    for test, kind in _KINDS:
        if test(mode):
            raise Refused(path, f"it is {kind}, not a regular file")
    if not stat.S_ISREG(mode):
        raise Refused(path, "it is not a regular file")
    if info.st_uid != os.geteuid():
        raise Refused(path, f"it belongs to uid {info.st_uid}, not to us (uid {os.geteuid()})")
    if info.st_nlink > 1:
        raise Refused(path, f"it has {info.st_nlink - 1} other hard link(s)")


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


class Output:
    """A file being written: :meth:`write` bytes, then :meth:`close` (which, for
    a whole file, renames it into place) or :meth:`abort`. A context manager
    closes on success and aborts on an exception."""

    __slots__ = ("fd", "path", "tmp")

    def __init__(self, fd: int, path: str, tmp: str | None) -> None:
        self.fd: int | None = fd
        self.path = path
        self.tmp = tmp

    def fileno(self) -> int:
        if self.fd is None:
            msg = f"{self.path}: already closed"
            raise ValueError(msg)
        return self.fd

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.write(self.fileno(), view[done:])
        return done

    def detach(self) -> int:
        """Hand over the descriptor of a streamed file (nothing left to rename)."""
        if self.tmp is not None:
            msg = f"{self.path}: a whole file is renamed into place by close(), not detached"
            raise ValueError(msg)
        fd = self.fileno()
        self.fd = None
        return fd

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            os.close(fd)
            if self.tmp is not None:
                os.replace(self.tmp, self.path)
        except BaseException:
            self._remove_tmp()
            raise

    def abort(self) -> None:
        fd, self.fd = self.fd, None
        _close_quietly(fd)
        self._remove_tmp()

    def _remove_tmp(self) -> None:
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass

    def __enter__(self) -> Output:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


# DropBehind's threads now running: id(its DropBehind) -> the pid of the process
# running it (a fork()ed child has none of its parent's). No lock: a fork() while
# another thread held it would leave it held in the child; one dict operation
# each is atomic.
_dropping: dict[int, int] = {}


class DropBehind:
    """Lets go of a long trace file's pages behind its end, on a thread of its own.

    A trace file is written once, front to back, and read later if at all. Left
    to the kernel, every byte of it stays in the page cache until memory runs
    short, crowding out the program's own files; and on a virtual machine that
    hands free memory back to its host (free page reporting), each new page of
    it costs a fault in the host too (on one measured VM, the kernel's copy into
    new pages was two thirds of what writing a trace cost the drain thread).
    Pages let go of are soon written into again, while the host still backs them.

    So once the file passes :attr:`START` bytes, each time it grows by
    :attr:`CHUNK` a thread advises ``POSIX_FADV_DONTNEED`` for what lies more
    than :attr:`KEEP` bytes behind its end: Linux starts writing back what is
    dirty (it waits for no disk) and drops the pages already written back; the
    next advice covers the previous window again, for those it skipped. The
    newest :attr:`KEEP` bytes stay cached for ``tail -f`` and a viewer run right
    after; a short trace is never touched. The file is the same to any reader.

    The advice may block in the file system (starting writeback), so it is never
    given by the writer (the drain thread: a burst's records would wait behind
    it, and be dropped), but by a thread started for it with ``_thread``: the
    program's ``threading.enumerate()`` does not list it. It holds its own
    duplicate of the descriptor, closed when it ends. Only for a regular file
    where ``posix_fadvise`` exists; where the advice fails, or no thread can
    start, it stops, and the file is written as before. :meth:`running` counts
    these threads (what 3.12+'s warning about a ``fork()`` with threads counts
    must know of them).
    """

    __slots__ = ("_advised", "_closed", "_fd", "_next", "_pid", "_size", "_source", "_wake")

    START = 64 << 20
    CHUNK = 8 << 20
    KEEP = 32 << 20

    def __init__(self, fd: int) -> None:
        self._source: int | None = None  # the writer's descriptor, until the thread starts
        self._fd: int | None = None  # the thread's own duplicate of it
        self._next = -1  # the size at which the thread is woken next; -1: never
        self._size = 0  # the file's size at the last wake-up
        self._advised = 0  # advised up to here
        self._closed = False
        self._pid = os.getpid()
        self._wake = _thread.allocate_lock()
        self._wake.acquire()  # released by wrote(): a signal that holds one wake-up
        if hasattr(os, "posix_fadvise") and stat.S_ISREG(os.fstat(fd).st_mode):
            self._source, self._next = fd, self.START

    @staticmethod
    def running() -> int:
        """How many of these threads this process runs now."""
        pid = os.getpid()
        return sum(1 for owner in list(_dropping.values()) if owner == pid)

    def wrote(self, size: int) -> None:
        """The file is ``size`` bytes long now (written from its start)."""
        if size < self._next or self._next < 0:
            return
        self._next = size + self.CHUNK
        self._size = size
        if self._fd is None and not self._start():
            return
        try:
            self._wake.release()
        except RuntimeError:  # woken already: it reads the newest size
            pass

    def _start(self) -> bool:
        source, self._source = self._source, None
        if source is None:  # its thread ran and ended
            self._next = -1
            return False
        try:
            self._fd = os.dup(source)
            _dropping[id(self)] = os.getpid()  # first: counted from the thread's first moment
            _thread.start_new_thread(self._run, (self._fd,))
        except BaseException as exc:  # no thread: neither counted nor holding a descriptor
            _dropping.pop(id(self), None)
            self._next = -1
            self._release()
            if isinstance(exc, (OSError, RuntimeError)):  # out of descriptors or threads, or at exit: as before
                return False
            raise
        return True

    def _run(self, fd: int) -> None:
        try:
            while True:
                self._wake.acquire()
                if self._closed:
                    return
                end = self._size - self.KEEP
                start = max(0, self._advised - self.KEEP)
                if end > start:
                    os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)
                    self._advised = end
        except BaseException:  # a file system that refuses it: left alone from now on
            self._next = -1  # (and nothing reaches stderr: a _thread's error would)
        finally:
            self._release()
            _dropping.pop(id(self), None)

    def _release(self) -> None:
        fd, self._fd = self._fd, None
        _close_quietly(fd)

    def close(self) -> None:
        """The file is finished: the thread ends, after any advice it is giving.
        In a ``fork()``ed child, which has no such thread, the child's copy of
        its descriptor is closed here."""
        self._closed = True
        self._next = -1
        if self._pid != os.getpid():
            self._release()
            return
        try:
            self._wake.release()
        except RuntimeError:
            pass


def create(path: str | os.PathLike[str], *, stream: bool = False) -> Output:
    """Open ``path`` for writing, privately (``0600``) and safely (see the module).

    ``stream=True``: the file itself, truncated if it is a regular file of ours,
    else created exclusively. ``stream=False``: a temporary file beside it, renamed
    over it by :meth:`Output.close`. Raises :class:`Refused` (an ``OSError``)
    when something not ours is at the path, other ``OSError`` as ``open`` does.
    """
    name = os.fspath(path)
    info = _lstat(name)
    if info is not None and _is_devnull(name, info):
        return Output(os.open(name, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)), name, None)
    if info is not None:
        _check(name, info)
    if not stream:
        import tempfile  # a whole file written at once (the viewers'); a stream never needs it

        directory, base = os.path.split(os.path.abspath(name))
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)  # O_EXCL, 0600, random
        return Output(fd, name, tmp)
    if info is None:
        try:
            return Output(os.open(name, _FLAGS | os.O_CREAT | os.O_EXCL, 0o600), name, None)
        except FileExistsError:
            raise Refused(name, "something else created it at the same moment") from None
    try:
        fd = os.open(name, _FLAGS | _NONBLOCK)
    except OSError as exc:
        if os.path.islink(name):
            raise Refused(name, "it is a symbolic link") from None
        if exc.errno == errno.ENXIO:  #: a FIFO with no reader, swapped in since the lstat
            raise Refused(name, "it is a FIFO (named pipe), not a regular file") from None
        raise
    try:
        _check(name, os.fstat(fd), info)
        os.ftruncate(fd, 0)
        os.fchmod(fd, 0o600)
        if _NONBLOCK:
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return Output(fd, name, None)
