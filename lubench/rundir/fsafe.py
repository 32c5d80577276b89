"""Writing inside a run directory without ever following a link out of it, and OS errors
said in one line.

A run directory is written only through these functions: each file is opened with
``O_NOFOLLOW`` (a symbolic link planted in place of ``records.jsonl`` is refused, its target
untouched), a whole file is replaced atomically (a temporary file created with ``O_EXCL``,
then ``rename``, which replaces a link itself, never its target), and a sub-directory
(``report/``, ``logs/``) must be a real directory of the run directory.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from pathlib import Path

from lubench.errors import LubenchError

__all__ = ["FsError", "describe", "open_append", "open_new", "atomic_write", "real_dir",
           "check_output_dir", "no_link", "no_links_in", "is_run_dir", "read_json_object",
           "regular_file"]

META = "meta.json"
MAX_META_BYTES = 64 << 20  # a meta.json larger than this is not one lubench wrote

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class FsError(LubenchError):
    """A file-system problem with a path of the user's: one line naming path and cause."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)


def describe(exc: OSError, action: str = "", path: str | os.PathLike | None = None) -> str:
    """``cannot write run/records.jsonl: No space left on device`` — one line, the path and
    the cause (the C library's message; the errno name when there is none)."""
    where = path if path is not None else (exc.filename or "")
    cause = exc.strerror or (errno.errorcode.get(exc.errno or 0) if exc.errno else "") or \
        type(exc).__name__
    if exc.errno == errno.ELOOP and _NOFOLLOW:
        cause = "it is a symbolic link (lubench never writes through one)"
    text = f"{action} {where}".strip() if action else str(where)
    return f"{text}: {cause}" if text else cause


def no_link(path: Path) -> None:
    """Raise :class:`FsError` when ``path`` exists as a symbolic link."""
    if path.is_symlink():
        raise FsError(f"{path} is a symbolic link (to {os.readlink(path)}); lubench never "
                      f"writes through one: remove it", path)


def _open(path: Path, flags: int, mode: int = 0o644, action: str = "cannot write") -> int:
    try:
        return os.open(path, flags | _NOFOLLOW | _CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():
            no_link(path)
        raise FsError(describe(exc, action, path), path) from None


def no_links_in(folder: Path) -> None:
    """Raise :class:`FsError` when ``folder`` or anything below it is a symbolic link (a
    folder about to be written by code that opens files the ordinary way)."""
    no_link(folder)
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            no_link(path)


def open_append(path: Path) -> int:
    """A descriptor appending to ``path`` (created when missing), never through a link.

    Refused with :class:`FsError`: a path that is not a regular file (a FIFO, opened without
    blocking, is refused, not waited on) and a file with another hard link — appending to
    it would change a file that also lives elsewhere under another name."""
    fd = _open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise FsError(f"{path} is not a regular file", path)
    if info.st_nlink > 1:
        os.close(fd)
        raise FsError(f"{path} has {info.st_nlink - 1} other hard link(s); lubench never "
                      f"appends to a file that also lives elsewhere: move it away", path)
    os.set_blocking(fd, True)
    return fd


def regular_file(path: Path, what: str = "") -> bool:
    """Whether ``path`` exists; :class:`FsError` when it exists and is not a regular file
    (a directory, a FIFO, a device), which no reader of a run directory opens."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise FsError(describe(exc, "cannot read", path), path) from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise FsError(f"{path} is {kind}{what}", path)
    return True


def read_json_object(path: Path, limit: int = MAX_META_BYTES) -> dict | None:
    """The JSON object in ``path`` (a regular file, not a link, at most ``limit`` bytes), or
    None when it is missing, unreadable, not JSON, or not an object."""
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        with open(os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | os.O_NONBLOCK),
                  "rb") as fh:
            data = json.loads(fh.read(limit + 1).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a run directory: its ``meta.json`` is what :class:`RunStore`
    writes first (a JSON object with a ``run_id`` and its ``sessions``). A folder that merely
    holds a file named ``meta.json`` or ``records.jsonl`` is not one."""
    meta = read_json_object(Path(path) / META)
    return meta is not None and isinstance(meta.get("run_id"), str) and \
        isinstance(meta.get("sessions"), list)


def open_new(path: Path, mode: int = 0o644) -> int:
    """A descriptor on a file this call creates (``O_EXCL``): never an existing one."""
    return _open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)


def atomic_write(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data``: a fresh temporary file, fsync'd, renamed over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a leftover of a crash (or a planted link: unlink removes the link)
    fd = open_new(tmp)
    try:
        payload = data.encode() if isinstance(data, str) else data
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise FsError(describe(exc, "cannot write", path), path) from None
    os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise FsError(describe(exc, "cannot write", path), path) from None


def real_dir(path: Path) -> Path:
    """``path`` as a real directory (created when missing); a link or a file there is an
    :class:`FsError`."""
    no_link(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FsError(describe(exc, "cannot create directory", path), path) from None
    if not path.is_dir():
        raise FsError(f"{path} exists and is not a directory", path)
    return path


def check_output_dir(path: Path, is_run_dir: bool) -> None:
    """``-o DIR`` must be new, an empty directory, or (``is_run_dir``) a run directory.

    Raises :class:`FsError` naming the path: a file, a link, a directory holding other
    things (lubench would mix its files with them), or a place that cannot be created.
    """
    no_link(path)
    if path.exists():
        if not path.is_dir():
            raise FsError(f"-o {path}: exists and is not a directory", path)
        if is_run_dir:
            return
        try:
            entries = sorted(p.name for p in path.iterdir())
        except OSError as exc:
            raise FsError(describe(exc, "-o", path), path) from None
        if entries:
            shown = ", ".join(entries[:3]) + (", …" if len(entries) > 3 else "")
            raise FsError(f"-o {path}: the directory is not empty ({shown}) and is not a "
                          f"run directory; choose a new or empty directory", path)
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise FsError(f"-o {path}: {parent} is not a directory", path)
