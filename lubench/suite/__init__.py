"""Suite files: what to run, validated, expanded into cases.

Modules
-------
``load``         :func:`~lubench.suite.load.load_suite`: read, validate every entry against
                 its plugin, expand into cases (the face)
``yamlfile``     reading a YAML file of the user's: once, UTF-8, no key twice, bounded
``entries``      each entry against its plugin (grid, sizes, checks): the plugin calls of
                 loading, run in one contained child
``schema``       the fixed part of the format as a pydantic model; every error with its path;
                 JSON Schema (``lubench schema``)
``cases``        :class:`~lubench.suite.cases.Case` and :class:`~lubench.suite.cases.Suite`
                 values: seeds, case ids, labels
``selection``    ``-k`` selection; the one ``NAME[key=value,...]`` parser
``limits``       the per-case ``timeout`` and ``memory_limit``: parsed, defaulted, resolved
``values``       times and memory sizes with units, device and executor names (no imports)
``report_spec``  the report specification a suite's ``report:`` holds (and ``lubench report``
                 reads again)

Nothing is imported here: the command line reads :mod:`lubench.suite.values` when it starts,
and loading a suite (YAML, pydantic, the registry) is only for the commands that need one.
"""
