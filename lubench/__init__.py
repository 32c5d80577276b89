"""lubench: compare strategies for factorizing linear operators.

For an operator, how accurate is each factorization, how many parameters does it store, and
how long does it take? See ``lubench.api`` for the plugin contract and
``lubench.hookspecs`` for the hooks.
"""

from lubench.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
