"""Execution: run cases where they should run, enforce the limits, report as they finish.

Modules
-------
``run``       :func:`make_plan` and :func:`run_cases`, the face: the plan of a run, built
              once, and what a run directory lacks, handed to the plan's executor
``plan``      :class:`RunPlan` (frozen: run id, directory, plugins, executor, workers,
              threads, device, cache folder), the executor interface, the :class:`Sink`
``inline``    the inline executor: in this process (debugging)
``local/``    the local executor: a fresh worker process per case, its process tree, its
              timeout and memory limit
``slurm/``    the SLURM executor: job arrays through submitit, each task the local supervisor
              on one case; adopt on resume, watch, collect
``worker``    one case inside a worker: build, check, factorize, grade → one record
``devices``   is CUDA usable, what does ``auto`` mean here (asked in a child process)
``limits``    thread settings, the start method, dying with the parent
``signals``   Ctrl-C, SIGTERM and SIGHUP while cases run (the first stops, the rest insist)
``progress``  the progress bar on stderr, one line per case without one
``options``   the executor settings: command line over the suite

Executors
---------
Each is a class with one method, ``run(items, plan, sink)`` (:class:`~lubench.execution.plan.
Executor`): it runs the (case, repeat) items under the plan and reports every start, step and
record to the sink; :func:`run_cases` takes the plan's from :data:`EXECUTORS` and never asks
which it holds.

``local`` (default)
    Every case (every repeat) runs in a fresh worker process, at most ``jobs`` at a time. A
    fresh process per case keeps a crash, a hard timeout or an out-of-memory kill confined to
    that case, and makes the peak memory of a case its own (no allocator state inherited from
    earlier cases).
``inline``
    Cases run one after the other in this process, for debugging (a debugger and ``print``
    work). No timeout, no memory limit, no thread setting: a case that hangs hangs the run.
``slurm``
    Cases go to SLURM job arrays through ``submitit`` (one array per distinct resource
    request: a GPU only for a case that will run on CUDA, memory always requested). Each
    array task runs :func:`execute_case`, i.e. the same local supervisor on one case, so
    timeouts and memory limits mean the same thing on the cluster. Records come back through
    submitit's result files into the run directory as tasks finish; the job ids are kept in
    the run directory, so ``--resume`` adopts jobs still queued or running (see ``slurm``).
    submitit's executor is injectable (``SlurmExecutor(submitit_executor=...)``); the tests
    use ``submitit.AutoExecutor(cluster="local")`` and a live single-node SLURM
    (``tests/slurm/``).

Why ``fork``
------------
On Linux a worker is started with the ``fork`` start method: the parent has already imported
NumPy, SciPy and the plugins (the registry is loaded once, before the first fork), so starting
a worker costs milliseconds instead of the second or more an interpreter needs to import them
again (``spawn``/``forkserver``), which matters for suites of hundreds of small cases. The
known hazards of ``fork`` do not apply: the parent runs no computation of its own (no OpenMP
pool is live in it), does not initialise CUDA (PyTorch, when a selected method's plugin
``requires`` it, is imported once in the parent before the first fork — importing creates no
CUDA context — and each worker sets its threads), and a
worker ends with ``os._exit`` so no parent ``atexit`` handler runs twice. Elsewhere (macOS,
where ``fork`` is unsafe with system frameworks) workers are spawned.

Each worker starts a session of its own and is the subreaper of its descendants, joins the
case's cgroup when there is one (:mod:`~lubench.execution.local.proctree`,
:mod:`~lubench.execution.local.cgroups`), sends its stdout and stderr to ``RUN_DIR/logs/``,
ignores SIGINT (the parent decides what Ctrl-C means), and asks the kernel to kill it when the
parent dies (``PR_SET_PDEATHSIG``), so that a ``kill -9`` of ``lubench run`` leaves no worker
computing.

Limits
------
*Timeout* (``case.timeout``, seconds; default 1 h, ``none`` for none): hard. At the deadline
the parent kills the case's whole process tree and records ``timeout`` / ``exceeded the 10 s
timeout``. The parent never blocks on one case (pipes are read without blocking, a process is
joined only once it has exited), so the deadline holds for every case at once.

*Memory* (``case.memory_limit``, bytes; default half the RAM): what the case's whole tree
adds, sampled every 25 ms: the cgroup's ``memory.current`` where the memory controller is
available, else the sum of the proportional set sizes (PSS) of the tree's processes minus the
worker's at its start (see :mod:`~lubench.execution.local.proctree` for why PSS, not RSS). Above the
limit the tree is killed and the case recorded ``failed`` / ``out of memory (limit 2.0 GiB;
peak …)``. A case whose own peak (``ru_maxrss``) ends above the limit between two samples is
recorded the same way, and a ``MemoryError`` raised inside the case gets the same message.
``RLIMIT_AS`` was rejected: it limits *address space*, not memory, and the libraries reserve
far more than they touch (importing PyTorch maps about 2 GB of address space for 0.3 GB
resident; a CUDA context reserves tens of GB), so any limit tight enough to mean something
kills healthy cases at import time. An allocation faster than a sample can overshoot briefly
(at ~3 GB/s, by under 100 MB); with a cgroup, ``memory.max`` is the kernel's backstop.

*Threads*: with ``-j N`` each worker sets its BLAS (threadpoolctl), OpenMP and PyTorch threads
to ``max(1, cores // N)`` before the case starts (environment variables too, so that a
PyTorch imported later inside the worker picks them up); the value is the ``threads`` column.

Interruption
------------
The first Ctrl-C (or SIGTERM) stops starting cases, kills the cases in flight (their whole
trees) and returns with ``interrupted=True`` and ``stop_signal`` (the CLI exits 130 or 143);
every finished case is already on disk. A second Ctrl-C raises
``KeyboardInterrupt`` at once (workers are still killed on the way out).
"""

from __future__ import annotations

from lubench.execution.limits import format_bytes, limit_threads, threads_per_worker
from lubench.execution.local import LocalExecutor, LocalPool
from lubench.execution.options import ExecutorSettings, executor_settings
from lubench.execution.plan import Collect, RunPlan, Sink
from lubench.execution.run import EXECUTORS, RunOutcome, make_plan, run_cases
from lubench.execution.slurm import SlurmExecutor
from lubench.execution.slurm.resources import submitit_parameters
from lubench.execution.slurm.tasks import execute_case

__all__ = ["run_cases", "make_plan", "RunPlan", "Sink", "Collect", "execute_case",
           "RunOutcome", "LocalExecutor", "LocalPool", "SlurmExecutor", "threads_per_worker",
           "limit_threads", "format_bytes", "submitit_parameters", "EXECUTORS",
           "ExecutorSettings", "executor_settings"]
