"""Finding and importing plugins into a :class:`lubench.registry.manager.Registry`: the installed
entry points of the group ``lubench``, and a ``--plugin MODULE|FILE.py`` or suite
``plugins:`` entry.

Each is loaded on its own, so that one that fails to import is recorded as ``broken:
<reason>`` and the others keep working (pluggy's ``load_setuptools_entrypoints`` stops at
the first failure). A module or file not imported yet is first imported in a probe process
(:mod:`lubench.registry.probe`), so that a crash or a hang on import stays there. A plugin
named in ``LUBENCH_DISABLE_PLUGINS`` is not imported at all.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lubench.errors import PluginError
from lubench.registry.importing import (
    distribution_of,
    find_module,
    import_file,
    importable_from,
    is_file_spec,
    quietly,
)
from lubench.registry.info import PluginInfo, disabled_names
from lubench.registry.probe import ProbeOutput, probe_import

if TYPE_CHECKING:
    from lubench.registry.manager import Registry

__all__ = ["ENTRY_POINT_GROUP", "load_entry_points", "load_spec"]

ENTRY_POINT_GROUP = "lubench"


def load_entry_points(reg: Registry) -> None:
    """Load every installed ``lubench`` entry point into ``reg``, one by one, in name order."""
    disabled = disabled_names()
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
            reg.mark_disabled(info)
            continue
        reg.claim_name(info)
        try:
            obj = ep.load()
        except (Exception, SystemExit) as exc:
            reg.mark_broken(info, exc)
            continue
        reg.targets[ep.value] = ep.name
        reg.register(obj, ep.name, info=info)


def load_spec(reg: Registry, spec: str, base_dir: Path | None = None) -> str:
    """Load into ``reg`` the plugin named by a module path or a ``.py`` file; returns its
    plugin name (see :meth:`lubench.registry.manager.Registry.load_spec`)."""
    if is_file_spec(spec):
        return _load_file(reg, spec, base_dir)
    return _load_module(reg, spec, base_dir)


def _load_file(reg: Registry, spec: str, base_dir: Path | None) -> str:
    path = Path(spec).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    path = path.resolve()
    name = path.stem
    if str(path) in reg.targets:
        return reg.targets[str(path)]
    info = PluginInfo(name, f"file {path}", kind="file", target=str(path))
    if disabled_names() & {name, spec, str(path)}:
        reg.mark_disabled(info)
        return name
    if not path.is_file():
        raise PluginError(f"plugin file not found: {path}", plugin=name)
    reg.claim_name(info)
    reg.targets[str(path)] = name
    output = ProbeOutput()
    reason = probe_import(lambda: _register_scratch(import_file(path), name), output=output)
    info.printed = output.nbytes
    if reason:  # a crash, an exit or a hang of the import or a hook stays in the probe
        reg.mark_broken(info, reason)
        return name
    with quietly():
        try:
            obj = import_file(path)
        except (Exception, SystemExit) as exc:
            reg.mark_broken(info, exc)
            return name
        return reg.register(obj, name, info=info).name


def _register_scratch(obj: object, name: str) -> None:
    """In the probe's child: register the imported plugin in a registry of its own, so that
    its hooks run there first (one that crashes, exits or hangs is found out there)."""
    from lubench.registry.manager import Registry

    Registry().register(obj, name)


def _load_module(reg: Registry, spec: str, base_dir: Path | None) -> str:
    name = spec
    if spec in reg.targets:
        return reg.targets[spec]
    info = PluginInfo(name, f"module {spec}", kind="module", target=spec)
    if name in disabled_names():
        reg.mark_disabled(info)
        return name
    folder = find_module(spec, base_dir)
    reg.claim_name(info)
    reg.targets[spec] = name
    if spec not in sys.modules:
        def probe() -> None:
            with importable_from(folder):
                _register_scratch(importlib.import_module(spec), name)

        output = ProbeOutput()
        reason = probe_import(probe, output=output)  # a crash or hang stays in the probe
        info.printed = output.nbytes
        if reason:
            reg.mark_broken(info, reason)
            return name
    with quietly():
        try:
            with importable_from(folder):
                obj = importlib.import_module(spec)
        except ModuleNotFoundError as exc:
            if exc.name == spec or spec.startswith(f"{exc.name}."):  # a typo in the name
                del reg.targets[spec]
                raise PluginError(f"plugin module not found: '{spec}' ({exc})",
                                  plugin=spec) from None
            reg.mark_broken(info, exc)  # it imports something that is missing: broken
            return name
        except (Exception, SystemExit) as exc:
            reg.mark_broken(info, exc)
            return name
        info.distribution, info.version = distribution_of(spec)
        dist = f"{info.distribution} {info.version}, " if info.distribution else ""
        file = getattr(obj, "__file__", None)
        info.origin = f"{dist}module {spec}" + (f" ({file})" if file else "")
        return reg.register(obj, name, info=info).name
