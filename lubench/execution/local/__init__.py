"""Cases on this machine: every case in a fresh worker process that owns its process tree.

Modules
-------
``pool``      :class:`~lubench.execution.local.pool.LocalPool`: at most ``jobs`` workers, the
              hard timeout and the memory limit of each case
``process``   the body of a worker process (thread limits, its log, progress, its record)
``proctree``  a case's process tree: membership, fair memory (PSS), kill
``cgroups``   a cgroup v2 per case where the system lets lubench create one
``channel``   worker → parent messages, read without ever blocking
"""

from __future__ import annotations

from lubench.execution.local.pool import LocalPool

__all__ = ["LocalPool"]
