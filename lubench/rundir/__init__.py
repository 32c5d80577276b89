"""The run directory: what a run writes, and the only place it writes.

Modules
-------
``records``      the result schema: statuses, columns, one record per finished case and
                 repeat; strict JSON lines; reading, deduplicating and framing them
``store``        :class:`~lubench.rundir.store.RunStore`: ``records.jsonl`` appended (fsync
                 per case), ``meta.json``, the suite's copy, ``logs/``, the Parquet tables
``merge``        one run directory from several (``lubench merge``)
``fsafe``        writing without following a link out of the directory; OS errors in one line
``environment``  what ``meta.json`` records of the machine (versions, BLAS, CPU, GPU)

Records only ever get appended; every reader (store, merge, report) goes through
:func:`~lubench.rundir.records.read_records`.
"""
