"""The plugin registry: every plugin found, imported, checked and registered the same way.

Modules
-------
``manager``       :class:`Registry` (the pluggy manager; operators and methods by name) and
                  :func:`load_registry`, the face
``loading``       where plugins come from: entry points, ``--plugin MODULE|FILE.py``, a
                  suite's ``plugins:``; imported one by one
``contract``      what registration checks: hooks marked and spelled, classes, unique names
``info``          :class:`PluginInfo` (a plugin's origin and status); the
                  ``LUBENCH_STRICT_PLUGINS`` and ``LUBENCH_DISABLE_PLUGINS`` variables
``importing``     importing a plugin: a file as a stable module, a module from a folder
``probe``         a plugin's first import in a child process: a crash or hang stays there
``availability``  what a plugin ``requires`` to run, whether it is here, how to install it
"""

from __future__ import annotations

from lubench.registry.info import PluginInfo
from lubench.registry.manager import Registry, load_registry

__all__ = ["Registry", "load_registry", "PluginInfo"]
