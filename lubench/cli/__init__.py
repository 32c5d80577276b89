"""The ``lubench`` command line: parse, load, call the library, say what happened.

Modules
-------
``main``         the click group and ``lubench run``'s options (the console script
                 ``lubench.cli:main``; ``python -m lubench.cli``)
``interrupt``    Ctrl-C, SIGTERM and SIGHUP outside a run's cases: one line, 128 + signal
``common``       one-line user errors (exit 2), the ``--plugin`` option, the registry with a
                 warning per broken plugin
``run_suite``    ``lubench run``: plugins, suite, cases, run directory, run, summary, exit
``run_support``  ``run``'s option and environment checks, the dry-run list, the summary
``plugins``      ``list``, ``plugins``, ``check-plugin``, ``schema``
``listing``      what ``lubench list`` prints; docstrings as plain text
``report``       ``report``, ``compare``
``merge``        ``merge``
"""

from lubench.cli.main import main

__all__ = ["main"]
