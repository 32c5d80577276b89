"""A cgroup v2 per case, where the system lets this process create one.

A cgroup holds every process started inside it, however it detached (``setsid``, a double
fork, a daemon): membership is inherited at ``fork`` and only root can move a process out.
That makes it the exact answer to "which processes belong to this case", and
``cgroup.kill`` (Linux ≥ 5.14) ends all of them in one write.

Layout: ``<cgroup2 mount>/<this process's cgroup>/lubench-<pid>/case-<k>``. The run group
``lubench-<pid>`` holds no process (cgroup v2 forbids processes in a group whose children use
controllers), so the ``memory`` controller can be enabled for its children whenever the
parent group offers it; then a case's ``memory.current`` is exactly the memory charged to
its processes (pages they touched first, including copy-on-write copies, not the pages
shared with lubench). Without that controller the group still gives membership and kill.

The group is used only when it can be created (root, or a delegated subtree such as a
systemd user service with ``Delegate=yes``); ``LUBENCH_CGROUP=0`` turns it off (the
process-tree sweep of :mod:`lubench.execution.local.proctree` is then the only mechanism).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import signal
from pathlib import Path

__all__ = ["CgroupRoot", "CaseCgroup", "cgroup_root", "DISABLE_VAR"]

DISABLE_VAR = "LUBENCH_CGROUP"  # "0": never use a cgroup


def _cgroup2_mount() -> Path | None:
    """Where the unified (v2) hierarchy is mounted, from ``/proc/self/mountinfo``."""
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return Path(left.split()[4])
    except OSError:
        pass
    return None


def _own_cgroup() -> str | None:
    """This process's path in the v2 hierarchy (the ``0::`` line of /proc/self/cgroup)."""
    try:
        with open("/proc/self/cgroup") as fh:
            for line in fh:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


class CaseCgroup:
    """One case's cgroup: join it from the worker, read its members and memory, kill them."""

    def __init__(self, path: Path):
        self.path = path

    @property
    def has_memory(self) -> bool:
        return (self.path / "memory.current").exists()

    def join(self) -> None:
        """Move the calling process into the group (call first thing in the worker, before
        it can start anything: every descendant is then inside)."""
        self.add(0)  # "0" is the writing process

    def add(self, pid: int) -> None:
        """Move process ``pid`` into the group (from the parent, as soon as it started the
        worker: a kill of the group from then on reaches it, however late the worker runs
        its first line)."""
        with open(self.path / "cgroup.procs", "w") as fh:
            fh.write(f"{int(pid)}\n")

    def pids(self) -> list[int]:
        """Every process in the group now (any depth of detachment)."""
        return [int(p) for p in _read(self.path / "cgroup.procs").split()]

    def memory_current(self) -> int | None:
        """Bytes charged to the group (``memory.current``), None without the controller."""
        text = _read(self.path / "memory.current").strip()
        return int(text) if text.isdigit() else None

    def set_memory_max(self, limit: int) -> bool:
        """Let the kernel enforce ``limit`` bytes on the group (its OOM killer acts inside the
        group only). True when set."""
        try:
            (self.path / "memory.max").write_text(f"{int(limit)}\n")
            return True
        except OSError:
            return False

    def oom_kills(self) -> int:
        """How many processes of the group the kernel killed for memory.max."""
        for line in _read(self.path / "memory.events").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def populated(self) -> bool:
        for line in _read(self.path / "cgroup.events").splitlines():
            if line.startswith("populated "):
                return line.split()[1] != "0"
        return bool(self.pids())

    def kill(self) -> None:
        """SIGKILL every process of the group. ``cgroup.kill`` where the kernel has it; else
        freeze the group (no fork can race the sweep), kill each member, thaw."""
        try:
            (self.path / "cgroup.kill").write_text("1\n")
            return
        except OSError:
            pass
        frozen = False
        with contextlib.suppress(OSError):
            (self.path / "cgroup.freeze").write_text("1\n")
            frozen = True
        for _ in range(10):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if frozen:
            with contextlib.suppress(OSError):
                (self.path / "cgroup.freeze").write_text("0\n")

    def remove(self) -> bool:
        """Remove the (empty) group; False while a process is still in it (try later)."""
        try:
            os.rmdir(self.path)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            return False


class CgroupRoot:
    """``lubench-<pid>``: the group under which this process creates one group per case."""

    def __init__(self, path: Path):
        self.path = path
        self._count = 0

    def new_case(self) -> CaseCgroup | None:
        """A fresh, empty group for one case; None when it cannot be created."""
        self._count += 1
        path = self.path / f"case-{self._count}"
        try:
            path.mkdir()
        except OSError:
            return None
        return CaseCgroup(path)

    def remove(self) -> None:
        """Remove the case groups left (empty ones) and the run group."""
        for child in list(self.path.glob("case-*")):
            CaseCgroup(child).remove()
        with contextlib.suppress(OSError):
            os.rmdir(self.path)


def _remove_stale(base: Path) -> None:
    """End what is left in the ``lubench-<pid>`` groups whose lubench is gone (a run killed
    by -9: its workers died with it, detached descendants may not have) and remove them (an
    empty one at once, the others at a later start)."""
    for group in base.glob("lubench-*"):
        pid = group.name.split("-", 1)[1]
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        for case in group.glob("case-*"):
            CaseCgroup(case).kill()
        CgroupRoot(group).remove()


_ROOT: dict[int, CgroupRoot | None] = {}


def _remove_at_exit(pid: int, root: CgroupRoot) -> None:
    if os.getpid() == pid:  # not in a forked child that happens to run atexit handlers
        root.remove()


def cgroup_root() -> CgroupRoot | None:
    """This process's run group, created on first use; None when cgroups cannot be used
    here (no cgroup2 mount, no permission to create a group, or ``LUBENCH_CGROUP=0``)."""
    if os.environ.get(DISABLE_VAR, "").strip() in ("0", "no", "off", "false"):
        return None
    pid = os.getpid()  # a forked child must not reuse its parent's group
    if pid in _ROOT:
        return _ROOT[pid]
    root = None
    mount, own = _cgroup2_mount(), _own_cgroup()
    if mount is not None and own is not None:
        base = mount / own.lstrip("/")
        path = base / f"lubench-{pid}"
        try:
            path.mkdir(exist_ok=True)
            root = CgroupRoot(path)
            probe = root.new_case()  # creating is not enough: joining must be allowed too
            if probe is None or not os.access(probe.path / "cgroup.procs", os.W_OK):
                raise PermissionError(errno.EACCES, "cannot use", str(path))
            probe.remove()
            controllers = _read(path / "cgroup.controllers").split()
            if "memory" in controllers:
                with contextlib.suppress(OSError):
                    (path / "cgroup.subtree_control").write_text("+memory\n")
            _remove_stale(base)
            atexit.register(_remove_at_exit, pid, root)
        except OSError:
            if root is not None:
                root.remove()
            root = None
    _ROOT[pid] = root
    return root
