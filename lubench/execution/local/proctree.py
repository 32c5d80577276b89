"""A case owns its process tree: every process it starts is found, measured and ended with it.

Membership
----------
The worker of a case starts its own session (``setsid``: its pid is the session and process
group id of everything it starts that does not detach) and makes itself a *child subreaper*
(``PR_SET_CHILD_SUBREAPER``): a descendant whose parent exits — a double fork, a daemon that
called ``setsid`` — is re-parented to the worker instead of ``init``, so it stays in the
worker's tree for as long as the worker lives. The parent then knows a case's processes as:

* with a cgroup (:mod:`lubench.execution.local.cgroups`, where the system lets us create one):
  the group's members, exactly, whatever they did;
* else the worker and its descendants (``psutil``, sampled at every memory sample), every
  process ever seen there (remembered, so a descendant orphaned by the worker's own death is
  still known), and every process whose session or process group is the worker's.

:meth:`CaseTree.kill` ends them all: ``cgroup.kill``; or stop every member with SIGSTOP
(a stopped process cannot fork), look again until no new member appears, then SIGKILL them.

Memory
------
What the case adds, counted fairly whatever the shape of its tree:

* with a cgroup memory controller: ``memory.current`` (pages charged to the case's
  processes; pages inherited from lubench at fork stay charged to lubench);
* else the sum over the tree of the proportional set size (PSS, ``/proc/PID/smaps_rollup``:
  a page shared by k processes counts 1/k in each), minus the worker's PSS when it started.

A forked worker shares lubench's pages (B bytes, copy-on-write); counting RSS per process
would charge B to every helper the case forks (four idle helpers: 5·B). With PSS the tree's
share of those pages is B·m/(m+1) for m processes sharing them with lubench, and the
worker's share at the start, B/2, is subtracted: the inherited pages count at most B/2,
whatever the number of helpers, while a page the case allocated is counted once in total,
however many of its processes share it (and fully when one process holds it, detached or
not). The cost of one sample is about 1 ms per process of the tree (one read of
``smaps_rollup``, more for a process holding PyTorch); :func:`sample_interval` sets their
rhythm from the headroom left under the limit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import Any

from lubench.execution.local.cgroups import CaseCgroup, cgroup_root
from lubench.registry.probe import stop_then_kill

__all__ = ["CaseTree", "enter_case", "end_descendants", "pss", "SAMPLE_EVERY", "alive",
           "sample_interval"]

SAMPLE_EVERY = 0.025  # seconds between two memory samples of a case close to its limit
SAMPLE_AT_MOST = 0.5  # seconds between two samples of a case far below it
FILL_RATE = 8e9  # bytes/s: faster than a process tree fills fresh pages here (~2–5 GB/s)


def sample_interval(current: int, limit: float) -> float:
    """Seconds until the next memory sample of a case using ``current`` of ``limit`` bytes.

    A tree cannot grow faster than FILL_RATE, so waiting (limit − current)/FILL_RATE cannot
    let it pass the limit unseen by more than one short interval; the wait is kept within
    [SAMPLE_EVERY, SAMPLE_AT_MOST]. Far below the limit this samples 20× less often than
    the fixed 25 ms rhythm did: each sample reads ``smaps_rollup`` of every process of the
    tree, a few ms for a process holding PyTorch, which took some 40 % of a core from the
    workers on a 2-core machine with two cases running."""
    return min(SAMPLE_AT_MOST, max(SAMPLE_EVERY, (limit - current) / FILL_RATE))
SWEEP_PASSES = 20  # look-again passes of a kill without a cgroup
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def pss(pid: int) -> int | None:
    """Proportional set size of ``pid`` in bytes (``Pss`` of ``/proc/PID/smaps_rollup``;
    without ``/proc``, its unique set size); None when the process is gone or unreadable (a
    zombie has no memory)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (ValueError, IndexError):
        return None
    except OSError:
        if sys.platform.startswith("linux"):
            return None
        try:  # no /proc (macOS): the unique set size, the pages only this process holds
            import psutil

            return int(psutil.Process(pid).memory_full_info().uss)
        except Exception:
            return None
    return None


def alive(proc: Any) -> bool:
    """True when the psutil process still runs (not gone, not a zombie, pid not reused)."""
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def enter_case(cgroup_path: str | None) -> None:
    """Called first thing in a case's worker process: a session of its own, subreaper of its
    descendants, member of the case's cgroup (when there is one). Never raises."""
    with contextlib.suppress(OSError):
        os.setsid()
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    if cgroup_path:
        with contextlib.suppress(OSError):
            CaseCgroup(_path(cgroup_path)).join()


def end_descendants(passes: int = SWEEP_PASSES) -> int:
    """SIGKILL every descendant of this process (called by a worker when its case is done:
    as a subreaper it still holds the ones that detached). Returns how many were killed."""
    import psutil

    me = psutil.Process()
    killed: set[int] = set()
    for _ in range(passes):
        try:
            children = [c for c in me.children(recursive=True) if c.pid not in killed]
        except psutil.Error:
            break
        live = [c for c in children if alive(c)]
        if not live:
            break
        stop_then_kill(live)
        killed.update(child.pid for child in live)
    for _ in range(len(killed)):  # reap the ones that are our children (zombies otherwise)
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    return len(killed)


def _path(text: str) -> Any:
    from pathlib import Path

    return Path(text)


@dataclass
class CaseTree:
    """The processes of one case, seen from the parent.

    Use: ``tree = CaseTree.create()`` before starting the worker, pass
    ``tree.cgroup_path`` to the worker (which calls :func:`enter_case`), ``tree.attach(pid)``
    once it is started; then :meth:`memory` at each sample, :meth:`kill` when the case ends
    (whatever the reason), :meth:`close` once the worker has been reaped.
    """

    cgroup: CaseCgroup | None = None
    root_pid: int | None = None
    base_pss: int = 0
    peak: int = 0  # the largest memory() seen, bytes
    seen: dict[int, Any] = field(default_factory=dict)  # pid -> psutil.Process

    @classmethod
    def create(cls, use_cgroup: bool = True, memory_max: int | None = None) -> CaseTree:
        """A tree with its own cgroup when available. ``memory_max`` (bytes) is handed to the
        kernel as the group's ``memory.max`` when the memory controller is there (a backstop
        above the limit the parent enforces)."""
        group = None
        if use_cgroup:
            root = cgroup_root()
            group = root.new_case() if root is not None else None
            if group is not None and memory_max:
                group.set_memory_max(memory_max)
        return cls(cgroup=group)

    @property
    def cgroup_path(self) -> str | None:
        return str(self.cgroup.path) if self.cgroup is not None else None

    @property
    def mechanism(self) -> str:
        return "cgroup" if self.cgroup is not None else "sweep"

    def attach(self, pid: int) -> None:
        """Start following the worker ``pid`` (call right after it is started). With a
        cgroup, the parent moves the worker into it here, and the worker joins it again as
        the first line of :func:`enter_case`: the worker's join puts it inside before it
        starts anything, the parent's before any :meth:`kill` (Ctrl-C just after a case
        started, on a loaded machine, can come before the worker ran a line)."""
        self.root_pid = pid
        self._remember(pid)
        if self.cgroup is not None:
            with contextlib.suppress(OSError):  # (it may have exited already)
                self.cgroup.add(pid)
        self.base_pss = pss(pid) or 0

    # -- membership --------------------------------------------------------------------------
    def _remember(self, pid: int) -> Any:
        import psutil

        proc = self.seen.get(pid)
        if proc is None:
            with contextlib.suppress(psutil.Error):
                proc = self.seen[pid] = psutil.Process(pid)
        return proc

    def _members(self) -> set[int]:
        """Cheap view for a sample: the cgroup's members, or the worker's descendants now plus
        every process seen before (gone ones read as no memory)."""
        import psutil

        if self.cgroup is not None:
            return set(self.cgroup.pids())
        root = self.seen.get(self.root_pid) if self.root_pid else None
        if root is not None:
            with contextlib.suppress(psutil.Error):
                for child in root.children(recursive=True):
                    self.seen.setdefault(child.pid, child)
        return set(self.seen)

    def pids(self) -> list[int]:
        """The case's live processes now (the worker included while it runs)."""
        if self.cgroup is not None:
            pids = self.cgroup.pids()
            for pid in pids:
                self._remember(pid)
            return pids
        members = self._members()
        return [pid for pid in members if alive(self.seen[pid])]

    def _session_members(self) -> list[Any]:
        """Processes in the worker's session or process group (a sweep without a cgroup).

        Only while the worker's pid is still held (running, or a zombie not yet reaped): once
        reaped, its number may be reused by an unrelated session or group leader."""
        import psutil

        root = self.seen.get(self.root_pid) if self.root_pid else None
        try:
            if root is None or not root.is_running():
                return []
        except psutil.Error:
            return []
        out = []
        me = os.getpid()
        for pid in psutil.pids():
            if pid in (me, self.root_pid) or pid in self.seen:
                continue
            try:
                if os.getsid(pid) == self.root_pid or os.getpgid(pid) == self.root_pid:
                    proc = self._remember(pid)
                    if proc is not None:
                        out.append(proc)
            except OSError:
                continue
        return out

    # -- memory ------------------------------------------------------------------------------
    def memory(self) -> int:
        """Bytes the case's tree adds now (see the module docstring); updates :attr:`peak`."""
        current = self.cgroup.memory_current() if self.cgroup is not None else None
        if current is None:
            total = 0
            for pid in self._members():
                size = pss(pid)
                if size is None and self.cgroup is None and not alive(self.seen[pid]):
                    del self.seen[pid]  # gone: forget it (its pid may be reused)
                total += size or 0
            current = max(0, total - self.base_pss)
        self.peak = max(self.peak, current)
        return current

    def oom_killed(self) -> bool:
        """True when the kernel killed a process of the case for the group's memory.max."""
        return self.cgroup is not None and self.cgroup.oom_kills() > 0

    # -- ending ------------------------------------------------------------------------------
    def kill(self) -> None:
        """SIGKILL every process of the case, however it detached. Returns at once (the
        processes die asynchronously; :meth:`remaining` tells which still run)."""
        if self.cgroup is not None:
            self.cgroup.kill()  # complete: no process leaves its cgroup
            return
        import psutil

        stopped: dict[int, Any] = {}
        for _ in range(SWEEP_PASSES):
            new = [p for pid, p in self._candidates().items() if pid not in stopped]
            if not new:
                break
            for proc in new:
                stopped[proc.pid] = proc
                with contextlib.suppress(psutil.Error):
                    proc.send_signal(signal.SIGSTOP)
        for proc in stopped.values():
            with contextlib.suppress(psutil.Error):
                proc.kill()

    def _candidates(self) -> dict[int, Any]:
        import psutil

        found = {pid: self.seen[pid] for pid in self.pids() if pid in self.seen}
        for proc in list(found.values()):  # children re-parented to a member still alive
            with contextlib.suppress(psutil.Error):
                for child in proc.children(recursive=True):
                    found.setdefault(child.pid, self._remember(child.pid) or child)
        for proc in self._session_members():
            found.setdefault(proc.pid, proc)
        me = os.getpid()
        return {pid: p for pid, p in found.items() if pid != me and p is not None and alive(p)}

    def remaining(self) -> list[int]:
        """Processes of the case still running (zombies do not count)."""
        if self.cgroup is not None and self.cgroup.populated():
            return self.cgroup.pids() or [-1]
        return [pid for pid, proc in self.seen.items() if alive(proc)]

    def close(self) -> bool:
        """Forget the tree and remove its cgroup. False when a process still holds it (call
        again later)."""
        if self.cgroup is not None and not self.cgroup.remove():
            return False
        self.seen.clear()
        return True
