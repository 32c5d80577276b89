"""What lubench knows of one plugin (:class:`PluginInfo`), its statuses, and the two
environment variables that change how plugins load (``LUBENCH_STRICT_PLUGINS``,
``LUBENCH_DISABLE_PLUGINS``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["PluginInfo", "UNAVAILABLE", "STRICT_VAR", "DISABLE_VAR", "strict", "disabled_names"]

UNAVAILABLE = "unavailable"  # the PluginInfo status of a plugin whose requires are missing
STRICT_VAR = "LUBENCH_STRICT_PLUGINS"
DISABLE_VAR = "LUBENCH_DISABLE_PLUGINS"


@dataclass
class PluginInfo:
    """One plugin as ``lubench plugins`` lists it.

    Attributes
    ----------
    name : str
        The plugin's name: the entry point's name, the module path, or the file's stem.
    origin : str
        Where it came from, for people: ``lubench-textbook 0.1.0, entry point textbook =
        lubench_textbook``, ``module my_pkg.my_mod (/path/my_mod.py)``, ``file /path/x.py``.
    status : str
        ``ok``, ``unavailable: needs <modules>: <install command>`` (it loaded, but a module
        it ``requires`` to run is missing: its names are listed, its cases recorded as
        unavailable), ``broken: <one-line reason>`` or ``disabled (LUBENCH_DISABLE_PLUGINS)``.
    operators, methods : list of str
        The names it adds.
    kind : str
        ``entry point``, ``module``, ``file`` or ``object``.
    distribution, version : str or None
        The installed distribution that provides it (entry points and modules).
    target : str
        The module name or the file path that was imported.
    printed : int
        Bytes the plugin wrote on stdout and stderr while imported (not shown: lubench's own
        output stays readable; a warning says how much).
    """

    name: str
    origin: str
    status: str = "ok"
    operators: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    kind: str = "object"
    distribution: str | None = None
    version: str | None = None
    target: str = ""
    printed: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def is_unavailable(self) -> bool:
        return self.status.startswith(UNAVAILABLE)

    @property
    def unavailable_reason(self) -> str | None:
        """``needs torch: pip install "lubench[learned]"`` for an unavailable plugin."""
        return self.status.split(": ", 1)[1] if self.is_unavailable else None

    @property
    def is_broken(self) -> bool:
        return self.status.startswith("broken")

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "origin": self.origin,
                "kind": self.kind, "distribution": self.distribution, "version": self.version,
                "target": self.target, "operators": list(self.operators),
                "methods": list(self.methods)}


def disabled_names() -> set[str]:
    """The names in ``LUBENCH_DISABLE_PLUGINS`` (comma-separated): plugin, distribution or
    module names not to load."""
    return {s.strip() for s in os.environ.get(DISABLE_VAR, "").split(",") if s.strip()}


def strict() -> bool:
    """Whether ``LUBENCH_STRICT_PLUGINS`` makes a broken plugin an error."""
    return os.environ.get(STRICT_VAR, "").strip().lower() in {"1", "true", "yes", "on"}
