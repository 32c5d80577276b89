"""What every method is measured by, computed by the core (never by a method itself).

Modules
-------
``grading``  :func:`~lubench.metrics.grading.grade`: the metrics of one factorization of one
             operator, from ``Factorization.apply`` and ``solve``

This package imports nothing of lubench but the public face (``lubench.api``): every stage
above it reads the metrics from here.
"""
