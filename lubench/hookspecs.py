"""The whole plugin API of lubench: two hooks.

A plugin is a module (or any object) with functions marked ``@hookimpl``. It reaches lubench
through the entry-point group ``lubench`` of an installed distribution, a ``--plugin MODULE``
or ``--plugin FILE.py`` on the command line, or the ``plugins:`` list of a suite. The
built-in operators and methods are plugins of exactly that kind.

Example, a complete method plugin::

    from lubench import hookimpl
    from lubench.api import Method

    class MyLU(Method):
        '''My LU.'''
        name = "my_lu"
        ...

    @hookimpl
    def lubench_methods():
        return [MyLU]

Every name a plugin adds must be unique across all loaded plugins; a clash is an error that
names both providers.

Besides the hooks, a plugin class or module may offer:

* ``check_params(cls, params)`` — a classmethod of an operator or method class that raises
  :class:`lubench.api.InvalidParameter` for parameter values that cannot work (``M: 3`` where
  a power of two is needed). Called when a suite loads, ``--dry-run`` included, once per
  point of the parameter grid, with every parameter (defaults filled in).
* ``requires = ["torch"]`` and ``install_hint = 'pip install "my-dist[gpu]"'`` — module
  attributes naming what the plugin's classes import when a case *runs*. Registration must
  not import them (import inside ``prepare``/``factorize``/``build``): without them the
  plugin is *unavailable*, its names stay listed with the install command, and its cases
  are recorded with status ``unavailable`` while the rest of a suite runs
  (:mod:`lubench.registry.availability`).
"""

from __future__ import annotations

import pluggy

from lubench.api import Method, OperatorGenerator

PROJECT = "lubench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def lubench_operators() -> list[type[OperatorGenerator]]:
    """Return the operator generator classes this plugin adds.

    Called once, when the plugin manager collects the registry. Each class must subclass
    :class:`lubench.api.OperatorGenerator` and set a unique ``name``. Return an empty list
    (or don't implement the hook) for none.
    """


@hookspec
def lubench_methods() -> list[type[Method]]:
    """Return the factorization method classes this plugin adds.

    Called once, when the plugin manager collects the registry. Each class must subclass
    :class:`lubench.api.Method`, set a unique ``name`` and a ``family`` (``classical``,
    ``learned`` or ``compressed``).
    """
