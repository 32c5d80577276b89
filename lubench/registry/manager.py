"""The plugin registry: plugins registered with pluggy, the operators and methods they add.

Plugins come from three places, all registered through the same ``PluginManager.register``
and asked through the same hooks (``lubench.hookspecs``) as the built-ins:

1. installed distributions' entry points in the group ``lubench`` (the built-ins among them);
2. ``--plugin MODULE`` or ``--plugin path/to/file.py`` on the command line;
3. a suite's ``plugins:`` list (paths relative to the suite file).

How they are found and imported is :mod:`lubench.registry.loading`; the rules they are
held to at registration, :mod:`lubench.registry.contract`; a plugin's record,
:mod:`lubench.registry.info`.

A plugin that fails to import, or whose hook raises, is recorded as ``broken: <reason>`` and
the others keep working. So is a plugin that implements no hook, a hook function not marked
``@hookimpl`` and a misspelled hook name (pluggy's ``check_pending``).
``LUBENCH_STRICT_PLUGINS=1`` turns a broken plugin into an error;
``LUBENCH_DISABLE_PLUGINS=a,b`` skips plugins by name (or by distribution or module name).

What a plugin cannot be forgiven: an operator or method name that another plugin already
provides, or a plugin name already taken — a :class:`PluginError` naming both providers.
"""

from __future__ import annotations

from pathlib import Path

import pluggy

from lubench import hookspecs
from lubench.api import LubenchError, Method, OperatorGenerator
from lubench.errors import PluginError, one_line
from lubench.params import closest
from lubench.registry.availability import unavailable_reason
from lubench.registry.contract import HOOKS, KIND, check_classes, hook_problem, validation_message
from lubench.registry.info import DISABLE_VAR, STRICT_VAR, UNAVAILABLE, PluginInfo, strict
from lubench.registry.loading import load_entry_points, load_spec

__all__ = ["Registry", "load_registry"]


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
    targets : dict
        Imported module name or file path → the plugin it loaded (each is loaded once).
    """

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.operators: dict[str, type[OperatorGenerator]] = {}
        self.methods: dict[str, type[Method]] = {}
        self.provider: dict[tuple[str, str], str] = {}
        self.targets: dict[str, str] = {}  # imported module name or file path -> plugin

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
        self.claim_name(info)
        problem = hook_problem(obj)
        if problem:
            self.mark_broken(info, problem)
            return info
        try:
            # what it requires to run (lubench.registry.availability)
            missing = unavailable_reason(obj)
        except TypeError as exc:
            self.mark_broken(info, str(exc))
            return info
        try:
            self.pm.register(obj, name=info.name)
            self.pm.check_pending()
        except Exception as exc:  # pluggy.PluginValidationError: misspelled hook, bad arguments
            if self.pm.is_registered(obj):
                self.pm.unregister(obj)
            self.mark_broken(info, validation_message(exc))
            return info
        try:
            added = {hook: self._collect(obj, hook, info) for hook in HOOKS}
        except PluginError:
            self.pm.unregister(obj)
            raise
        except (Exception, SystemExit) as exc:  # a hook raised, or returned no classes
            self.pm.unregister(obj)
            self.mark_broken(info, exc)
            return info
        for hook, classes in added.items():
            kind = KIND[hook]
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

    def claim_name(self, info: PluginInfo) -> None:
        """Take ``info.name``; PluginError when another plugin has it."""
        other = self.plugins.get(info.name)
        if other is not None:
            raise PluginError(
                f"two plugins are named '{info.name}': {other.origin} and {info.origin}; "
                f"rename one (or skip one with {DISABLE_VAR}={info.name})", plugin=info.name)

    def mark_broken(self, info: PluginInfo, exc: BaseException | str) -> None:
        """Record the plugin as ``broken: <reason>`` (PluginError with
        ``LUBENCH_STRICT_PLUGINS``)."""
        reason = exc if isinstance(exc, str) else one_line(exc)
        info.status = f"broken: {reason}"
        info.operators, info.methods = [], []
        self.plugins[info.name] = info
        if strict():
            raise PluginError(f"plugin '{info.name}' ({info.origin}) is broken: {reason} "
                              f"(unset {STRICT_VAR} to skip broken plugins)", plugin=info.name)

    def mark_disabled(self, info: PluginInfo) -> None:
        """Record the plugin as skipped by ``LUBENCH_DISABLE_PLUGINS``."""
        info.status = f"disabled ({DISABLE_VAR})"
        self.plugins.setdefault(info.name, info)

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
        return check_classes(classes, hook, info, self)

    def load_entry_points(self) -> None:
        """Load every installed ``lubench`` entry point, one by one, in name order."""
        load_entry_points(self)

    def load_spec(self, spec: str, base_dir: Path | None = None) -> str:
        """Load a plugin named by a module path or a ``.py`` file; returns its plugin name.

        A relative file path is taken from ``base_dir`` (the suite's folder, or the working
        directory); a module not found on ``sys.path`` is also looked for in ``base_dir``.
        Raises :class:`PluginError` when the file or module does not exist (a typo, not a
        broken plugin). Loading the same file or module twice loads it once.
        """
        return load_spec(self, spec, base_dir)

    # -- lookup ----------------------------------------------------------------------------
    def operator(self, name: str) -> type[OperatorGenerator]:
        try:
            return self.operators[name]
        except KeyError:
            raise LubenchError(f"unknown operator '{name}'{closest(name, self.operators)}"
                               f"{self._broken_hint()} ({self._see()})") from None

    def method(self, name: str) -> type[Method]:
        try:
            return self.methods[name]
        except KeyError:
            raise LubenchError(f"unknown method '{name}'{closest(name, self.methods)}"
                               f"{self._broken_hint()} ({self._see()})") from None

    def _see(self) -> str:
        return "see `lubench list`" + (", `lubench plugins`" if self._broken_hint() else "")

    def _broken_hint(self) -> str:
        """Why a name may be missing: plugins that broke, and plugins that were not loaded
        because ``LUBENCH_DISABLE_PLUGINS`` names them (the name may be theirs)."""
        broken = [p.name for p in self.broken()]
        disabled = [p.name for p in self.plugins.values() if p.status.startswith("disabled")]
        hint = f"; broken plugins: {', '.join(broken)}" if broken else ""
        if disabled:
            hint += (f"; {DISABLE_VAR} disabled {', '.join(map(repr, disabled))}, which may "
                     f"provide it")
        return hint

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
