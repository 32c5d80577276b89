"""What a plugin needs in order to run, and whether this environment has it.

A plugin module may declare the modules its operators or methods import when they *run*
(inside ``prepare`` / ``factorize`` / ``build``), which its registration must not import::

    requires = ["torch"]                               # importable top-level module names
    install_hint = 'pip install "my-dist[gpu]"'        # optional: how to get them

When one of them cannot be found (``importlib.util.find_spec``, which imports nothing), the
plugin is *unavailable*, not broken: its names stay known, ``lubench list`` and
``lubench plugins`` show them with the command that installs what is missing, and a suite
that names them records their cases with status ``unavailable`` while the rest runs.
Without an ``install_hint`` the command is ``pip install MODULE...``.

A plugin that imports a missing module at registration cannot be asked what it adds: it is
*broken* (``lubench plugins`` shows the import error), and a suite naming its methods fails to
load. Import heavy modules inside the methods that use them.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["REQUIRES_ATTR", "HINT_ATTR", "requirements", "missing_modules", "install_hint",
           "unavailable_reason", "preload_requirements"]

REQUIRES_ATTR = "requires"
HINT_ATTR = "install_hint"


def requirements(obj: object) -> list[str]:
    """The module names ``obj`` (a plugin module) declares in ``requires``.

    Raises TypeError when ``requires`` is not a list of module names (the plugin is broken).
    """
    names = getattr(obj, REQUIRES_ATTR, None)
    if names is None:
        return []
    if isinstance(names, str) or not isinstance(names, Iterable) or not all(
            isinstance(n, str) and n.strip() for n in names):
        raise TypeError(f"'{REQUIRES_ATTR}' must be a list of module names, got {names!r}")
    return [n.strip() for n in names]


def missing_modules(names: Iterable[str]) -> list[str]:
    """The names whose top-level module cannot be imported here (nothing is imported)."""
    missing = []
    for name in names:
        top = name.split(".")[0]
        try:
            found = importlib.util.find_spec(top) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def install_hint(obj: object, missing: Sequence[str]) -> str:
    """The command that installs what is missing, e.g. ``pip install "lubench[learned]"``."""
    hint = getattr(obj, HINT_ATTR, None)
    if isinstance(hint, str) and hint.strip():
        return hint.strip()
    return "pip install " + " ".join(missing)


def unavailable_reason(obj: object) -> str | None:
    """``needs torch: pip install "lubench[learned]"`` when a module ``obj`` requires is
    missing; None when everything it requires is importable."""
    missing = missing_modules(requirements(obj))
    if not missing:
        return None
    return f"needs {', '.join(missing)}: {install_hint(obj, missing)}"


def preload_requirements(registry: Any, methods: Iterable[str]) -> None:
    """Import here the modules the plugins of ``methods`` require, before worker processes
    are forked: each worker then inherits them instead of importing them again (PyTorch takes
    a second or more). Importing PyTorch initialises no CUDA context. A module that fails to
    import is left to the case, which records the error."""
    plugins = {registry.provider.get(("method", m)) for m in methods} - {None}
    for plugin in sorted(plugins):
        obj = registry.pm.get_plugin(plugin)
        for name in requirements(obj) if obj is not None else []:
            with contextlib.suppress(Exception):
                importlib.import_module(name)
