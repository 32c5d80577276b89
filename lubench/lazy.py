"""Modules imported on first use, so that registering a plugin stays light.

``lubench list`` imports every plugin module to register its classes; SciPy alone costs
0.3–0.5 s there (``scipy.sparse`` pulls in the array-API layer, ``scipy.linalg`` LAPACK).
A module that needs SciPy only inside its functions binds it with :func:`lazy_module`
instead of ``import``; the first attribute access imports it (then it is the real module
in ``sys.modules``, and later accesses cost one dictionary look-up).
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

__all__ = ["lazy_module"]


class _LazyModule(ModuleType):
    """Stands for module ``name`` until an attribute is read; then imports it."""

    def __init__(self, name: str):
        super().__init__(name)
        self.__dict__["_lazy_target"] = None

    def _load(self) -> ModuleType:
        target = self.__dict__["_lazy_target"]
        if target is None:
            target = importlib.import_module(self.__name__)
            self.__dict__["_lazy_target"] = target
        return target

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._load(), attr)

    def __dir__(self) -> list[str]:
        return dir(self._load())

    def __repr__(self) -> str:
        state = "loaded" if self.__dict__["_lazy_target"] is not None else "not yet imported"
        return f"<lazy module {self.__name__!r} ({state})>"


def lazy_module(name: str) -> ModuleType:
    """Module ``name`` (dotted, e.g. ``"scipy.sparse.linalg"``), imported when first used.

    Nothing is imported now, not even the parent packages; an import error surfaces at the
    first attribute access, where the module is used."""
    loaded = sys.modules.get(name)
    return loaded if loaded is not None else _LazyModule(name)
