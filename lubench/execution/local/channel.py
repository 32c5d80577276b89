"""Messages from a worker to the parent over a pipe, read without ever blocking.

A worker's descendants inherit the write end of its pipe when they fork without ``exec``; a
descendant that outlives the worker keeps it open, so the parent may never see end-of-file,
and a reader that waits for "the rest of a message" can wait forever. The parent therefore
reads only what is there (non-blocking ``os.read``), keeps partial frames in a buffer, and
stops reading a case once its record has arrived.

Frame: an 8-byte big-endian length, then that many bytes of pickle.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
from typing import Any

__all__ = ["Sender", "Receiver", "channel"]

_HEADER = struct.Struct("!Q")
_CHUNK = 1 << 16


def _fd(end: Any) -> tuple[int, Any]:
    """(file descriptor, owner to close) from an fd or an object with ``fileno()`` such as a
    ``multiprocessing`` Connection (which also carries the fd to a spawned child)."""
    return (end, None) if isinstance(end, int) else (end.fileno(), end)


class Sender:
    """The worker's end: :meth:`send` writes one whole frame (blocking)."""

    def __init__(self, end: Any):
        self.fd, self._owner = _fd(end)

    def send(self, obj: Any) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(_HEADER.pack(len(data)) + data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                self._owner.close() if self._owner is not None else os.close(self.fd)
            self.fd = -1


class Receiver:
    """The parent's end: :meth:`receive` returns the messages complete so far, never blocks.

    ``closed`` turns True at end-of-file (every writer gone) or after :meth:`close`.
    ``fileno()`` lets it be passed to ``multiprocessing.connection.wait``.
    """

    def __init__(self, end: Any):
        self.fd, self._owner = _fd(end)
        os.set_blocking(self.fd, False)
        self.buffer = bytearray()
        self.closed = False

    def fileno(self) -> int:
        return self.fd

    def receive(self, max_bytes: int = 1 << 26) -> list[Any]:
        """Read what is available (at most ``max_bytes`` this call), return whole messages."""
        got = 0
        while not self.closed and got < max_bytes:
            try:
                chunk = os.read(self.fd, _CHUNK)
            except BlockingIOError:
                break
            except OSError:
                self.close()
                break
            if not chunk:
                self.close()
                break
            self.buffer += chunk
            got += len(chunk)
        out = []
        while len(self.buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self.buffer)
            if len(self.buffer) < _HEADER.size + size:
                break
            data = bytes(self.buffer[_HEADER.size:_HEADER.size + size])
            del self.buffer[:_HEADER.size + size]
            try:
                out.append(pickle.loads(data))
            except Exception:  # a frame a stray descendant garbled: skip it
                continue
        return out

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self._owner.close() if self._owner is not None else os.close(self.fd)


def channel() -> tuple[Receiver, Sender]:
    """A pipe: (parent's :class:`Receiver`, worker's :class:`Sender`). Both ends are
    close-on-exec (a method's ``subprocess`` does not inherit them; a bare ``fork`` does)."""
    r, w = os.pipe()
    return Receiver(r), Sender(w)
