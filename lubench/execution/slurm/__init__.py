"""SLURM through submitit: one job array per resource request, each task a local supervisor
on one case (:func:`execute_case`), so that timeouts and memory limits mean what they mean
locally.

What a task asks for (CPUs, memory, time, GPUs) is :mod:`lubench.execution.slurm.resources`.
submitit writes the batch scripts, submits them and writes each task's result file; lubench
watches the jobs itself with ``squeue`` (:mod:`lubench.execution.slurm.queue`), which works
without SLURM accounting, and records every submitted job id in the run directory
(:mod:`lubench.execution.slurm.ledger`), so that:

* ``--resume`` adopts: a case whose job finished is collected from its result file, one whose
  job is still queued or running is waited for, and only cases whose jobs failed, were
  cancelled or vanished are submitted again. Each case runs once.
* an ``sbatch`` refusal is one line (:class:`LubenchError`, exit 2): what this call had
  submitted is cancelled, and the ledger says which cases were refused.
  (Adopting and submitting: :mod:`lubench.execution.slurm.submit`.)
* polling is quiet: submitit's own log and warnings go to ``RUN_DIR/slurm.log``; the terminal
  shows one status line per array when its counts change (at most every
  :data:`~lubench.execution.slurm.poll.STATUS_EVERY` seconds) and, without a progress bar,
  one line per case as it ends. (Polling: :mod:`lubench.execution.slurm.poll`.)
* Ctrl-C cancels every job of the run that has not ended.

A task that ends without a result file (killed by SLURM at its time limit, a node failure, a
cancellation by someone else) is recorded ``failed`` once ``squeue`` has shown it ended for
:data:`~lubench.execution.slurm.poll.RESULT_GRACE` seconds (result files may reach a shared
file system late).

The tasks, their body and the state one call keeps of them:
:mod:`lubench.execution.slurm.tasks`. The executor class is injectable
(``submitit_executor``): the tests use ``submitit.AutoExecutor(cluster="local")`` and a
live single-node SLURM (``tests/slurm/``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from lubench.errors import LubenchError
from lubench.execution.plan import RunPlan, Sink, WorkItem
from lubench.execution.signals import StopSignals
from lubench.execution.slurm.poll import watch
from lubench.execution.slurm.resources import submitit_parameters
from lubench.execution.slurm.submit import adopt, submit, submitit_logs_to
from lubench.execution.slurm.tasks import ArrayRun, execute_case

__all__ = ["SlurmExecutor", "execute_case", "default_submitit_executor",
           "submitit_parameters", "LOG_FILE"]

LOG_FILE = "slurm.log"  # submitit's log and warnings, sbatch's error output (RUN_DIR)


def default_submitit_executor(folder: Path) -> Any:
    """submitit's SLURM executor writing into ``folder``; no SLURM here is one line."""
    import submitit  # the `slurm` extra: imported only when SLURM is used

    try:
        return submitit.AutoExecutor(folder=folder, cluster="slurm")
    except RuntimeError as exc:
        raise LubenchError(f"--executor slurm: {exc} (use -j N for local workers)") from None


class SlurmExecutor:
    """Every case as a task of a SLURM job array (module docstring); ``plan.options`` holds
    the ``slurm_*`` options and ``folder``, submitit's files (default ``RUN_DIR/submitit``).
    ``submitit_executor(folder)`` builds submitit's executor (default:
    :func:`default_submitit_executor`)."""

    name: ClassVar[str] = "slurm"
    here: ClassVar[bool] = False  # a task's ``device: auto`` is asked on its node

    def __init__(self, submitit_executor: Callable[[Path], Any] | None = None):
        self.submitit_executor = submitit_executor or default_submitit_executor

    @staticmethod
    def workers(jobs: int) -> tuple[int | None, int | None]:
        return None, None  # one case per task; its threads are the CPUs it asks for

    def run(self, items: list[WorkItem], plan: RunPlan, sink: Sink) -> bool:
        """Adopt the jobs an earlier call of this run directory submitted, submit the rest,
        collect records as tasks finish. Returns False when stopped (the jobs not ended are
        cancelled); raises :class:`LubenchError` (one line) when ``sbatch`` refuses a
        submission."""
        options = dict(plan.options)
        given = options.pop("folder", None)
        if given is None and plan.run_dir is None:
            raise LubenchError("--executor slurm needs a run directory (or a folder option)")
        folder = Path(given) if given is not None else Path(plan.run_dir) / "submitit"
        run_dir = Path(plan.run_dir) if plan.run_dir is not None else folder.parent
        run_dir.mkdir(parents=True, exist_ok=True)
        executor = self.submitit_executor(folder / "%j")
        with StopSignals() as stopper, submitit_logs_to(run_dir / LOG_FILE) as log:
            arrays = ArrayRun(plan=plan, sink=sink, folder=folder, run_dir=run_dir,
                              options=options, executor=executor, log=log)
            try:
                fresh = adopt(arrays, items)
                if fresh:
                    submit(arrays, fresh)
                done = watch(arrays, stopper, stopper.wakeup)
            except KeyboardInterrupt:  # a second Ctrl-C: still cancel what has not ended
                arrays.cancel_all("interrupted")
                raise
        sink.submitted(arrays.job_ids)
        if not done:
            sink.stopped(stopper.signum)
        return done
