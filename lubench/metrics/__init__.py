"""What every method is measured by, computed by the core (never by a method itself).

Modules
-------
``table``    the metric table: every metric once — type, definition, norm, unit, better
             direction, headers — read by the records, grading, the reports and the reference
``grading``  :func:`~lubench.metrics.grading.grade`: the metrics of one factorization of one
             operator, from ``Factorization.apply`` and ``solve``

The lowest folder of the core: it imports nothing of lubench but the public face
(``lubench.api``), and touches no file (grading's cache is handed to it).
"""
