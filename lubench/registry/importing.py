"""Importing a plugin: a ``.py`` file as a module of a stable name, a module found in a folder
(on ``sys.path`` only while it is imported), and the distribution that installed it."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from lubench.errors import PluginError

__all__ = ["import_file", "importable_from", "distribution_of", "is_file_spec", "find_module",
           "quietly"]


def file_module_name(path: Path) -> str:
    """A stable module name for a plugin file: the same in every process (for pickling)."""
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return f"lubench_plugin_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{digest}"


def import_file(path: Path) -> object:
    """Import a .py file as a module (kept in sys.modules, so that its classes pickle)."""
    modname = file_module_name(path)
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(modname, None)
        raise
    return module


@contextlib.contextmanager
def importable_from(folder: Path | None) -> Iterator[None]:
    """While importing a plugin module found in ``folder`` (as ``python -m`` would from that
    folder), put it first on ``sys.path``; take it off again afterwards, so that loading
    plugins does not change what later imports find. The module stays in ``sys.modules``."""
    if folder is None:
        yield
        return
    entry = str(folder)
    sys.path.insert(0, entry)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


@contextlib.contextmanager
def quietly() -> Iterator[None]:
    """While a plugin is imported and registered in lubench's process: its output (stdout
    and stderr, down to the file descriptors) goes nowhere — the probe child counted it, and
    lubench says how much in one warning — and the working directory it may change is set
    back, so that a relative ``-o`` still means what it meant."""
    cwd = os.getcwd()
    saved: list[tuple[int, int]] = []
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            with contextlib.suppress(OSError):
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull, fd)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):  # what Python buffered goes nowhere too
            with contextlib.suppress(Exception):
                stream.flush()
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)
        with contextlib.suppress(OSError):
            if os.getcwd() != cwd:
                os.chdir(cwd)


def distribution_of(module_name: str) -> tuple[str | None, str | None]:
    """(distribution, version) that installs the top-level package of ``module_name``."""
    top = module_name.split(".")[0]
    try:
        dists = importlib.metadata.packages_distributions().get(top, [])
    except Exception:  # broken metadata of some unrelated distribution
        return None, None
    for dist in dists:
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None, None


def is_file_spec(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec or spec.startswith(("~", "."))


def find_module(spec: str, base_dir: Path | None) -> Path | None:
    """Where the top-level package of ``spec`` is imported from: None for ``sys.path``,
    else ``base_dir`` (the folder holding it), or PluginError when neither holds it."""
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", spec):
        raise PluginError(f"--plugin {spec!r} is neither a module path (pkg.module) nor a "
                          f".py file", plugin=spec)
    top = spec.split(".")[0]
    if top in sys.modules or importlib.util.find_spec(top) is not None:
        return None
    if base_dir is not None:
        folder = Path(base_dir).resolve()
        if (folder / f"{top}.py").is_file() or (folder / top).is_dir():
            return folder
    raise PluginError(f"plugin module not found: '{spec}' (not importable from sys.path"
                      + (f" nor from {base_dir}" if base_dir else "") + ")", plugin=spec)
