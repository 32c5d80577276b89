"""Reading a YAML file of the user's — a suite, a ``--spec`` file, a run's copy of its suite —
so that whatever the file holds, the answer is a value or one :class:`SuiteError` naming the
file and the place.

* **What is read**: a regular file or a pipe (``lubench run <(cat s.yaml)``), read once, at
  most :data:`MAX_BYTES`. A FIFO nobody writes is empty at once (opened without blocking); a
  device (``/dev/zero``) or a folder is refused.
* **Text**: UTF-8, strictly (a byte-order mark is dropped): a byte that is not UTF-8 is named
  with its offset.
* **YAML**: the safe loader (libyaml's when installed) with one change: a key given twice
  in one mapping is an error naming both lines — PyYAML keeps the last silently, so a second
  ``methods:`` list used to drop the first. Merge keys (``<<: *base``) may be overridden, as
  YAML says.
* **Size of the value**: nesting too deep for the parser, and a value that expands to more
  than :data:`MAX_NODES` nodes (aliases counted each time they are reached: a "billion
  laughs" file), are refused before anything walks it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from lubench.errors import SuiteError

__all__ = ["read_text", "parse_yaml", "read_yaml", "MAX_BYTES", "MAX_NODES"]

MAX_BYTES = 8 << 20
"""The largest file read (8 MiB): a suite listing thousands of entries is far smaller."""
MAX_NODES = 1_000_000
"""The most nodes (mappings, lists, scalars; an alias each time it is reached) a file may
expand to."""

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(_Base):  # type: ignore[misc, valid-type]
    """The safe loader, refusing a key given twice in one mapping."""


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    first: dict[Any, Any] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            seen = first.get(key)
        except TypeError:  # an unhashable key: the constructor says so below
            continue
        if seen is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {_short(key)} given twice in one mapping (first at line "
                f"{seen.line + 1}); YAML keeps only the last", key_node.start_mark)
        first[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def read_text(path: str | Path, what: str = "file") -> str:
    """The text of ``path``: a regular file or a pipe, at most :data:`MAX_BYTES`, UTF-8.

    Raises :class:`SuiteError` naming the path: missing, unreadable, a folder or a device,
    too large, not UTF-8.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise SuiteError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise SuiteError(f"{path}: is a folder, not a {what}") from None
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise SuiteError(f"{path}: is a folder, not a {what}")
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            raise SuiteError(f"{path}: not a regular file (a device?); give a {what}")
        os.set_blocking(fd, True)  # a pipe with a writer: wait for it; without one: empty
        chunks, size = [], 0
        while size <= MAX_BYTES:
            chunk = os.read(fd, min(1 << 20, MAX_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    if size > MAX_BYTES:
        raise SuiteError(f"{path}: larger than {MAX_BYTES >> 20} MiB; a {what} is far "
                         f"smaller (is this the right file?)")
    data = b"".join(chunks)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SuiteError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at line "
                         f"{line}, offset {exc.start}); save it as UTF-8") from None


def parse_yaml(text: str, where: str) -> Any:
    """The YAML value of ``text``; :class:`SuiteError` starting with ``where`` otherwise."""
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SuiteError(f"{where}: malformed YAML{at}: {problem}") from None
    except RecursionError:
        raise SuiteError(f"{where}: nested too deeply for a suite") from None
    if _too_large(data):
        raise SuiteError(f"{where}: expands to more than {MAX_NODES:,} values (YAML aliases "
                         f"repeating aliases?); a suite is far smaller")
    return data


def _too_large(data: Any) -> bool:
    """Whether walking ``data`` (aliases followed each time) visits more than MAX_NODES."""
    budget = MAX_NODES
    stack = [data]
    while stack:
        value = stack.pop()
        budget -= 1
        if budget < 0:
            return True
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
    return False


def read_yaml(path: str | Path, what: str = "suite file") -> tuple[Any, str]:
    """``(value, text)`` of the YAML file ``path`` (:func:`read_text`, :func:`parse_yaml`)."""
    text = read_text(path, what)
    return parse_yaml(text, str(path)), text
