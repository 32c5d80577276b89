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
:mod:`lubench.execution.slurm.tasks`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lubench.errors import LubenchError
from lubench.execution.local.pool import WorkItem
from lubench.execution.progress import Display
from lubench.execution.slurm.poll import watch
from lubench.execution.slurm.resources import submitit_parameters
from lubench.execution.slurm.submit import adopt, submit, submitit_logs_to
from lubench.execution.slurm.tasks import ArrayRun, execute_case

__all__ = ["execute_case", "run_submitit", "default_submitit_executor", "submitit_parameters",
           "LOG_FILE"]

LOG_FILE = "slurm.log"  # submitit's log and warnings, sbatch's error output (RUN_DIR)


def default_submitit_executor(folder: Path) -> Any:
    """submitit's SLURM executor writing into ``folder``; no SLURM here is one line."""
    import submitit

    try:
        return submitit.AutoExecutor(folder=folder, cluster="slurm")
    except RuntimeError as exc:
        raise LubenchError(f"--executor slurm: {exc} (use -j N for local workers)") from None


def run_submitit(items: list[WorkItem], *, folder: Path, run_id: str,
                 plugin_specs: tuple[str, ...], base_dir: str | None, options: dict,
                 factory: Callable[[Path], Any], on_record: Callable[[dict], None],
                 stop: Callable[[], bool], wakeup: Any, display: Display,
                 job_ids: list[str], run_dir: Path | None = None) -> bool:
    """Run ``items`` as SLURM array tasks (module docstring): adopt the jobs an earlier call
    of this run directory submitted, submit the rest, collect records as tasks finish.
    Returns False when stopped (the jobs not ended are cancelled); raises
    :class:`LubenchError` (one line) when ``sbatch`` refuses a submission."""
    run_dir = Path(run_dir) if run_dir is not None else Path(folder).parent
    run_dir.mkdir(parents=True, exist_ok=True)
    executor = factory(Path(folder) / "%j")
    with submitit_logs_to(run_dir / LOG_FILE) as log:
        arrays = ArrayRun(folder=folder, run_dir=run_dir, run_id=run_id,
                          plugin_specs=tuple(plugin_specs), base_dir=base_dir,
                          options=options, executor=executor, on_record=on_record,
                          display=display, job_ids=job_ids, log=log)
        try:
            fresh = adopt(arrays, items)
            if fresh:
                submit(arrays, fresh)
            return watch(arrays, stop, wakeup)
        except KeyboardInterrupt:  # a second Ctrl-C: still cancel what has not ended
            arrays.cancel_all("interrupted")
            raise
