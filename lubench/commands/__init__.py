"""The ``lubench`` subcommands other than ``run`` (which :mod:`lubench.cli` holds with the group).

Each command parses its options, calls the library and prints; none holds logic of its own.

- :mod:`~lubench.commands.common`: ``user_errors`` (one line, exit 2), the shared options,
  the registry with a warning per broken plugin;
- :mod:`~lubench.commands.run_support`: the ``run`` command's option checks and printing;
- :mod:`~lubench.commands.plugins`: ``list``, ``plugins``, ``check-plugin``, ``schema``;
- :mod:`~lubench.commands.report`: ``report`` and ``compare``;
- :mod:`~lubench.commands.merge`: ``merge``.
"""
