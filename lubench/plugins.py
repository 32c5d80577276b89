"""The plugin manager: finds plugins, registers them with pluggy, collects a registry.

Plugins come from three places, all registered through the same ``PluginManager.register``
and asked through the same hooks (``lubench.hookspecs``) as the built-ins:

1. installed distributions' entry points in the group ``lubench`` (the built-ins among them);
2. ``--plugin MODULE`` or ``--plugin path/to/file.py`` on the command line;
3. a suite's ``plugins:`` list (paths relative to the suite file).

Entry points are loaded one at a time, so that a plugin that fails to import, or whose hook
raises, is recorded as ``broken: <reason>`` and the others keep working (pluggy's own
``load_setuptools_entrypoints`` stops at the first failure). So is a plugin that implements
no hook, a hook function not marked ``@hookimpl`` and a misspelled hook name (pluggy's
``check_pending``). ``LUBENCH_STRICT_PLUGINS=1`` turns a broken plugin into an error;
``LUBENCH_DISABLE_PLUGINS=a,b`` skips plugins by name (or by distribution or module name).

What a plugin cannot be forgiven: an operator or method name that another plugin already
provides, or a plugin name already taken — a :class:`PluginError` naming both providers.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pluggy

from lubench import hookspecs
from lubench.api import FAMILIES, LubenchError, Method, OperatorGenerator
from lubench.availability import unavailable_reason
from lubench.errors import PluginError, one_line
from lubench.params import closest
from lubench.plugin_import import (
    distribution_of,
    find_module,
    import_file,
    importable_from,
    is_file_spec,
)
from lubench.plugin_probe import probe_import

__all__ = ["PluginInfo", "Registry", "PluginError", "load_registry", "ENTRY_POINT_GROUP",
           "HOOKS"]

ENTRY_POINT_GROUP = "lubench"
HOOKS = ("lubench_operators", "lubench_methods")
_KIND = {"lubench_operators": "operator", "lubench_methods": "method"}
_BASE = {"lubench_operators": OperatorGenerator, "lubench_methods": Method}
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


def _env_list(var: str) -> set[str]:
    return {s.strip() for s in os.environ.get(var, "").split(",") if s.strip()}


def _strict() -> bool:
    return os.environ.get(STRICT_VAR, "").strip().lower() in {"1", "true", "yes", "on"}


class Registry:
    """The loaded plugins and the operators and methods they add, by name.

    Attributes
    ----------
    pm : pluggy.PluginManager
        Every plugin that loaded is registered here under its name.
    plugins : dict
        Plugin name → :class:`PluginInfo`, in loading order, broken and disabled ones too.
    operators, methods : dict
        Name → class, across all plugins.
    provider : dict
        ``("operator" | "method", name)`` → the name of the plugin that adds it.
    """

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.operators: dict[str, type[OperatorGenerator]] = {}
        self.methods: dict[str, type[Method]] = {}
        self.provider: dict[tuple[str, str], str] = {}
        self._targets: dict[str, str] = {}  # imported module name or file path -> plugin

    # -- loading ---------------------------------------------------------------------------
    def register(self, obj: object, name: str, origin: str = "",
                 info: PluginInfo | None = None) -> PluginInfo:
        """Register ``obj`` (a module, or any object with ``@hookimpl`` functions) as a plugin.

        The way every loader ends, and the way to add an in-memory plugin (tests,
        ``lubench.testing``). Returns its :class:`PluginInfo` (status ``ok`` or ``broken``).
        Raises :class:`PluginError` when the name, or a name it adds, is already taken.
        """
        info = info or PluginInfo(name, origin or f"object {obj!r}")
        known = self.pm.get_name(obj)
        if known is not None:  # the same module reached twice (entry point and --plugin)
            return self.plugins[known]
        self._claim_name(info)
        problem = self._hook_problem(obj)
        if problem:
            self._fail(info, problem)
            return info
        try:
            missing = unavailable_reason(obj)  # what it requires to run (lubench.availability)
        except TypeError as exc:
            self._fail(info, str(exc))
            return info
        try:
            self.pm.register(obj, name=info.name)
            self.pm.check_pending()
        except Exception as exc:  # pluggy.PluginValidationError: misspelled hook, bad arguments
            if self.pm.is_registered(obj):
                self.pm.unregister(obj)
            self._fail(info, self._validation_message(exc))
            return info
        try:
            added = {hook: self._collect(obj, hook, info) for hook in HOOKS}
        except PluginError:
            self.pm.unregister(obj)
            raise
        except (Exception, SystemExit) as exc:  # a hook raised, or returned no classes
            self.pm.unregister(obj)
            self._fail(info, exc)
            return info
        for hook, classes in added.items():
            kind = _KIND[hook]
            table = self.operators if kind == "operator" else self.methods
            for cls in classes:
                table[cls.name] = cls
                self.provider[(kind, cls.name)] = info.name
        info.operators = [c.name for c in added["lubench_operators"]]
        info.methods = [c.name for c in added["lubench_methods"]]
        if missing:
            info.status = f"{UNAVAILABLE}: {missing}"
        self.plugins[info.name] = info
        return info

    def _claim_name(self, info: PluginInfo) -> None:
        other = self.plugins.get(info.name)
        if other is not None:
            raise PluginError(
                f"two plugins are named '{info.name}': {other.origin} and {info.origin}; "
                f"rename one (or skip one with {DISABLE_VAR}={info.name})", plugin=info.name)

    def _fail(self, info: PluginInfo, exc: BaseException | str) -> None:
        reason = exc if isinstance(exc, str) else one_line(exc)
        info.status = f"broken: {reason}"
        info.operators, info.methods = [], []
        self.plugins[info.name] = info
        if _strict():
            raise PluginError(f"plugin '{info.name}' ({info.origin}) is broken: {reason} "
                              f"(unset {STRICT_VAR} to skip broken plugins)", plugin=info.name)

    def _disabled(self, info: PluginInfo) -> None:
        info.status = f"disabled ({DISABLE_VAR})"
        self.plugins.setdefault(info.name, info)

    @staticmethod
    def _hook_problem(obj: object) -> str:
        """A hook function pluggy would silently ignore: not marked, or no hook at all."""
        marker = f"{hookspecs.PROJECT}_impl"
        functions = {n: getattr(obj, n, None) for n in dir(obj) if n.startswith("lubench_")}
        functions = {n: f for n, f in functions.items() if inspect.isroutine(f)}
        for hook in HOOKS:
            fn = functions.get(hook)
            if fn is not None and not hasattr(fn, marker):
                return (f"function {hook}() is not marked as a hook: decorate it with "
                        f"@lubench.hookimpl")
        if any(hasattr(f, marker) for f in functions.values()):
            return ""  # misspelled marked hooks are pluggy's check_pending's business
        near = [(n, difflib.get_close_matches(n, HOOKS, n=1, cutoff=0.8)) for n in functions]
        near = [(n, m[0]) for n, m in near if m]
        if near:
            return f"function {near[0][0]}() is not a lubench hook; did you mean {near[0][1]}()?"
        return f"implements no lubench hook ({', '.join(h + '()' for h in HOOKS)})"

    @staticmethod
    def _validation_message(exc: BaseException) -> str:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        m = re.search(r"unknown hook '(\w+)'", text)
        if m:
            return (f"unknown hook {m.group(1)}(){closest(m.group(1), HOOKS)} "
                    f"(the hooks are {', '.join(HOOKS)})")
        return one_line(exc)

    def _collect(self, obj: object, hook: str, info: PluginInfo) -> list[type]:
        """Call this plugin's implementation of ``hook`` (through pluggy) and check its classes."""
        impls = [i for i in getattr(self.pm.hook, hook).get_hookimpls() if i.plugin is obj]
        classes: list[type] = []
        for impl in impls:
            if impl.hookwrapper or impl.wrapper:
                continue
            out = impl.function()
            if out is None:
                continue
            if not isinstance(out, (list, tuple)):
                raise TypeError(f"{hook}() returned {type(out).__name__} {out!r}; expected a "
                                f"list of classes")
            classes.extend(out)
        return self._check_classes(classes, hook, info)

    def _check_classes(self, classes: list, hook: str, info: PluginInfo) -> list[type]:
        kind, base = _KIND[hook], _BASE[hook]
        table = self.operators if kind == "operator" else self.methods
        seen: dict[str, type] = {}
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise TypeError(f"{hook}() returned {cls!r}, which is not a subclass of "
                                f"lubench.api.{base.__name__}")
            name = getattr(cls, "name", "")
            if not isinstance(name, str) or not name.strip():
                raise TypeError(f"{hook}() returned {cls.__name__}, which sets no 'name'")
            if kind == "method" and cls.family not in FAMILIES:
                raise TypeError(f"method '{name}' has family {cls.family!r}; expected one of "
                                f"{', '.join(FAMILIES)}")
            if name in seen:
                if seen[name] is cls:
                    continue
                raise PluginError(f"plugin '{info.name}' ({info.origin}) adds two {kind}s "
                                  f"named '{name}': {seen[name].__qualname__} and "
                                  f"{cls.__qualname__}", plugin=info.name)
            if name in table:
                other = self.provider.get((kind, name), "?")
                where = self.plugins[other].origin if other in self.plugins else "?"
                raise PluginError(
                    f"{kind} name '{name}' is provided twice: by plugin '{other}' ({where}) "
                    f"and by plugin '{info.name}' ({info.origin}); rename one, or skip one "
                    f"with {DISABLE_VAR}={info.name}", plugin=info.name)
            seen[name] = cls
        return list(seen.values())

    def load_entry_points(self) -> None:
        """Load every installed ``lubench`` entry point, one by one, in name order."""
        disabled = _env_list(DISABLE_VAR)
        seen: set[tuple[str, str]] = set()
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        for ep in sorted(eps, key=lambda e: (e.name, e.value)):
            if (ep.name, ep.value) in seen:  # one distribution found twice on sys.path
                continue
            seen.add((ep.name, ep.value))
            dist = getattr(ep, "dist", None)
            dname = dist.metadata["Name"] if dist is not None else None
            version = dist.version if dist is not None else None
            where = f"{dname} {version}, " if dname else ""
            info = PluginInfo(ep.name, f"{where}entry point {ep.name} = {ep.value}",
                              kind="entry point", distribution=dname, version=version,
                              target=ep.value)
            if disabled & {ep.name, dname, ep.value.split(":")[0]}:
                self._disabled(info)
                continue
            self._claim_name(info)
            try:
                obj = ep.load()
            except (Exception, SystemExit) as exc:
                self._fail(info, exc)
                continue
            self._targets[ep.value] = ep.name
            self.register(obj, ep.name, info=info)

    def load_spec(self, spec: str, base_dir: Path | None = None) -> str:
        """Load a plugin named by a module path or a ``.py`` file; returns its plugin name.

        A relative file path is taken from ``base_dir`` (the suite's folder, or the working
        directory); a module not found on ``sys.path`` is also looked for in ``base_dir``.
        Raises :class:`PluginError` when the file or module does not exist (a typo, not a
        broken plugin). Loading the same file or module twice loads it once.
        """
        disabled = _env_list(DISABLE_VAR)
        if is_file_spec(spec):
            path = Path(spec).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = Path(base_dir) / path
            path = path.resolve()
            name = path.stem
            if str(path) in self._targets:
                return self._targets[str(path)]
            info = PluginInfo(name, f"file {path}", kind="file", target=str(path))
            if disabled & {name, spec, str(path)}:
                self._disabled(info)
                return name
            if not path.is_file():
                raise PluginError(f"plugin file not found: {path}", plugin=name)
            self._claim_name(info)
            self._targets[str(path)] = name
            reason = probe_import(lambda: import_file(path))  # a crash or hang stays there
            if reason:
                self._fail(info, reason)
                return name
            try:
                obj = import_file(path)
            except (Exception, SystemExit) as exc:
                self._fail(info, exc)
                return name
            return self.register(obj, name, info=info).name

        name = spec
        if spec in self._targets:
            return self._targets[spec]
        info = PluginInfo(name, f"module {spec}", kind="module", target=spec)
        if name in disabled:
            self._disabled(info)
            return name
        folder = find_module(spec, base_dir)
        self._claim_name(info)
        self._targets[spec] = name
        if spec not in sys.modules:
            def probe() -> None:
                with importable_from(folder):
                    importlib.import_module(spec)

            reason = probe_import(probe)  # a crash or hang stays in the probe's process
            if reason:
                self._fail(info, reason)
                return name
        try:
            with importable_from(folder):
                obj = importlib.import_module(spec)
        except ModuleNotFoundError as exc:
            if exc.name == spec or spec.startswith(f"{exc.name}."):  # a typo in the name
                del self._targets[spec]
                raise PluginError(f"plugin module not found: '{spec}' ({exc})",
                                  plugin=spec) from None
            self._fail(info, exc)  # it imports something that is missing: broken
            return name
        except (Exception, SystemExit) as exc:
            self._fail(info, exc)
            return name
        info.distribution, info.version = distribution_of(spec)
        dist = f"{info.distribution} {info.version}, " if info.distribution else ""
        file = getattr(obj, "__file__", None)
        info.origin = f"{dist}module {spec}" + (f" ({file})" if file else "")
        return self.register(obj, name, info=info).name

    # -- lookup ----------------------------------------------------------------------------
    def operator(self, name: str) -> type[OperatorGenerator]:
        try:
            return self.operators[name]
        except KeyError:
            raise LubenchError(f"unknown operator '{name}'{closest(name, self.operators)}"
                               f"{self._broken_hint()} (see `lubench list`)") from None

    def method(self, name: str) -> type[Method]:
        try:
            return self.methods[name]
        except KeyError:
            raise LubenchError(f"unknown method '{name}'{closest(name, self.methods)}"
                               f"{self._broken_hint()} (see `lubench list`)") from None

    def _broken_hint(self) -> str:
        broken = [p.name for p in self.broken()]
        return f"; broken plugins: {', '.join(broken)} (see `lubench plugins`)" if broken else ""

    def unavailable(self, kind: str, name: str) -> str | None:
        """Why the ``kind`` (``operator`` | ``method``) ``name`` cannot run here — its plugin
        lacks a module it ``requires`` — or None when it can."""
        info = self.plugins.get(self.provider.get((kind, name), ""))
        return info.unavailable_reason if info is not None else None

    def provenance(self, kind: str, name: str) -> tuple[str | None, str | None]:
        """(plugin name, version of the distribution that installs it) of an operator or
        method; the version is None for a plugin file or a module outside a distribution."""
        plugin = self.provider.get((kind, name))
        info = self.plugins.get(plugin or "")
        return plugin, (info.version if info is not None else None)

    def broken(self) -> list[PluginInfo]:
        """The plugins that failed to load (import error, raising hook, contract broken)."""
        return [p for p in self.plugins.values() if p.is_broken]


def load_registry(extra: list[str] | tuple[str, ...] = (), base_dir: Path | None = None,
                  entry_points: bool = True) -> Registry:
    """A registry with the installed entry points and the ``extra`` modules or files."""
    reg = Registry()
    if entry_points:
        reg.load_entry_points()
    for spec in extra:
        reg.load_spec(spec, base_dir)
    return reg
