"""The plugin manager: finds plugins, registers them with pluggy, collects a registry.

Plugins come from three places, all registered through the same ``PluginManager.register``:

1. installed distributions' entry points in the group ``lubench`` (the built-ins among them);
2. ``--plugin MODULE`` or ``--plugin path/to/file.py`` on the command line;
3. a suite's ``plugins:`` list (paths relative to the suite file).

Entry points are loaded one at a time, so that a plugin that fails to import is recorded as
``broken`` with its error and the others keep working (pluggy's own
``load_setuptools_entrypoints`` stops at the first failure). ``LUBENCH_STRICT_PLUGINS=1``
turns a broken plugin into an error; ``LUBENCH_DISABLE_PLUGINS=a,b`` skips plugins by name.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pluggy

from lubench import hookspecs
from lubench.api import FAMILIES, LubenchError, Method, OperatorGenerator
from lubench.params import closest

__all__ = ["PluginInfo", "Registry", "PluginError", "load_registry"]

ENTRY_POINT_GROUP = "lubench"


class PluginError(LubenchError):
    """A plugin could not be loaded or broke the contract; names the plugin and the rule."""

    def __init__(self, message: str, plugin: str | None = None):
        super().__init__(message)
        self.plugin = plugin


@dataclass
class PluginInfo:
    """One plugin as ``lubench plugins`` lists it."""

    name: str
    origin: str  # "entry point <dist> <version>", "module <name>", "file <path>"
    status: str = "ok"  # "ok" or "broken: <reason>"
    operators: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"name": self.name, "origin": self.origin, "status": self.status,
                "operators": self.operators, "methods": self.methods}


def _env_list(var: str) -> set[str]:
    return {s.strip() for s in os.environ.get(var, "").split(",") if s.strip()}


def _strict() -> bool:
    return os.environ.get("LUBENCH_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes"}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _import_file(path: Path) -> object:
    """Import a .py file as a module named after it (kept in sys.modules for pickling)."""
    modname = f"lubench_file_plugin_{path.stem}"
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


class Registry:
    """The loaded plugins and the operators and methods they add, by name."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.operators: dict[str, type[OperatorGenerator]] = {}
        self.methods: dict[str, type[Method]] = {}
        self.provider: dict[tuple[str, str], str] = {}  # (kind, name) -> plugin name

    # -- loading ---------------------------------------------------------------------------
    def _fail(self, info: PluginInfo, exc: BaseException | str) -> None:
        reason = exc if isinstance(exc, str) else _one_line(exc)
        info.status = f"broken: {reason}"
        self.plugins[info.name] = info
        if _strict():
            raise PluginError(f"plugin '{info.name}' ({info.origin}) is broken: {reason}",
                              plugin=info.name)

    def _add(self, obj: object, info: PluginInfo) -> None:
        """Register ``obj`` with pluggy, then collect what its hooks return."""
        if info.name in self.plugins and self.plugins[info.name].status == "ok":
            return  # the same plugin named twice (e.g. entry point and suite): once is enough
        try:
            self.pm.register(obj, name=info.name)
            self.pm.check_pending()
        except Exception as exc:  # pluggy.PluginValidationError or a misspelled hook
            if self.pm.is_registered(obj):
                self.pm.unregister(obj)
            self._fail(info, exc)
            return
        try:
            ops = self._call(obj, "lubench_operators")
            meths = self._call(obj, "lubench_methods")
            new_ops = self._check_classes(ops, OperatorGenerator, "lubench_operators", info)
            new_meths = self._check_classes(meths, Method, "lubench_methods", info)
        except PluginError:
            self.pm.unregister(obj)
            raise
        except Exception as exc:
            self.pm.unregister(obj)
            self._fail(info, exc)
            return
        for cls in new_ops:
            self.operators[cls.name] = cls
            self.provider[("operator", cls.name)] = info.name
        for cls in new_meths:
            self.methods[cls.name] = cls
            self.provider[("method", cls.name)] = info.name
        info.operators = [c.name for c in new_ops]
        info.methods = [c.name for c in new_meths]
        self.plugins[info.name] = info

    @staticmethod
    def _call(obj: object, hook: str) -> list:
        impl = getattr(obj, hook, None)
        if impl is None:
            return []
        out = impl()
        return list(out or [])

    def _check_classes(self, classes: list, base: type, hook: str, info: PluginInfo) -> list:
        kind = "operator" if base is OperatorGenerator else "method"
        table = self.operators if kind == "operator" else self.methods
        seen: set[str] = set()
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise TypeError(f"{hook} returned {cls!r}, which is not a subclass of "
                                f"lubench.api.{base.__name__}")
            name = getattr(cls, "name", "")
            if not isinstance(name, str) or not name:
                raise TypeError(f"{hook} returned {cls.__name__} without a 'name'")
            if kind == "method" and cls.family not in FAMILIES:
                raise TypeError(f"method '{name}' has family {cls.family!r}; expected one of "
                                f"{', '.join(FAMILIES)}")
            if name in table or name in seen:
                other = self.provider.get((kind, name), info.name)
                raise PluginError(
                    f"{kind} name '{name}' is provided twice: by plugin '{other}' and by "
                    f"plugin '{info.name}' ({info.origin}); rename one of them",
                    plugin=info.name)
            seen.add(name)
        return classes

    def load_entry_points(self) -> None:
        """Load every installed ``lubench`` entry point, one by one."""
        disabled = _env_list("LUBENCH_DISABLE_PLUGINS")
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        for ep in sorted(eps, key=lambda e: e.name):
            if ep.name in disabled:
                continue
            dist = getattr(ep, "dist", None)
            where = f"{dist.name} {dist.version}" if dist is not None else "?"
            info = PluginInfo(ep.name, f"entry point of {where} ({ep.value})")
            try:
                obj = ep.load()
            except Exception as exc:
                self._fail(info, exc)
                continue
            self._add(obj, info)

    def load_spec(self, spec: str, base_dir: Path | None = None) -> str:
        """Load a plugin named by a module path or a ``.py`` file; returns its plugin name.

        Raises PluginError when it cannot be found (a user's typo, not a broken plugin).
        """
        disabled = _env_list("LUBENCH_DISABLE_PLUGINS")
        is_file = spec.endswith(".py") or os.sep in spec or spec.startswith(".")
        if is_file:
            path = Path(spec).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            path = path.resolve()
            name = path.stem
            if name in disabled:
                return name
            if not path.is_file():
                raise PluginError(f"plugin file not found: {path}", plugin=name)
            info = PluginInfo(name, f"file {path}")
            try:
                obj = _import_file(path)
            except Exception as exc:
                self._fail(info, exc)
                return name
        else:
            name = spec
            if name in disabled:
                return name
            info = PluginInfo(name, f"module {spec}")
            if importlib.util.find_spec(spec.split(".")[0]) is None:
                raise PluginError(f"plugin module not found: '{spec}'", plugin=spec)
            try:
                obj = importlib.import_module(spec)
            except Exception as exc:
                self._fail(info, exc)
                return name
        self._add(obj, info)
        return name

    # -- lookup ----------------------------------------------------------------------------
    def operator(self, name: str) -> type[OperatorGenerator]:
        try:
            return self.operators[name]
        except KeyError:
            raise LubenchError(f"unknown operator '{name}'{closest(name, self.operators)}"
                               f" (see `lubench list`)") from None

    def method(self, name: str) -> type[Method]:
        try:
            return self.methods[name]
        except KeyError:
            raise LubenchError(f"unknown method '{name}'{closest(name, self.methods)}"
                               f" (see `lubench list`)") from None

    def broken(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if p.status != "ok"]


def load_registry(extra: list[str] | tuple[str, ...] = (), base_dir: Path | None = None,
                  entry_points: bool = True) -> Registry:
    """A registry with the installed entry points and the ``extra`` modules or files."""
    reg = Registry()
    if entry_points:
        reg.load_entry_points()
    for spec in extra:
        reg.load_spec(spec, base_dir)
    return reg
