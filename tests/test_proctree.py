"""A case owns its process tree: real forked workers whose descendants detach, hang, allocate.

Each scenario runs with a cgroup (when this machine lets us create one) and with the
fallback sweep (``use_cgroup=False``), so both mechanisms are exercised here.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import numpy as np
import psutil
import pytest

from lubench.execution.local.cgroups import cgroup_root
from lubench.execution.local.channel import channel
from lubench.execution.local.proctree import CaseTree, alive, enter_case

MECHANISMS = [
    pytest.param(True, id="cgroup", marks=pytest.mark.skipif(
        cgroup_root() is None, reason="cannot create a cgroup v2 here")),
    pytest.param(False, id="sweep"),
]


def _detach(alloc: int = 0) -> None:
    """Start a grandchild that detaches (setsid + double fork), optionally allocates
    ``alloc`` bytes, and hangs; then hang."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            keep = np.ones(alloc // 8) if alloc else None  # noqa: F841 - touched pages
            time.sleep(600)
        os._exit(0)
    time.sleep(600)


def _idle_helpers() -> None:
    for _ in range(4):
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
    time.sleep(600)


def _worker(cgroup_path: str | None, scenario, *args) -> None:
    enter_case(cgroup_path)
    scenario(*args)


def _start(use_cgroup: bool, scenario, *args) -> tuple[CaseTree, mp.Process]:
    tree = CaseTree.create(use_cgroup=use_cgroup)
    proc = mp.get_context("fork").Process(target=_worker,
                                          args=(tree.cgroup_path, scenario, *args))
    proc.start()
    tree.attach(proc.pid)
    return tree, proc


def _sample_until(tree: CaseTree, predicate, seconds: float) -> int:
    end = time.monotonic() + seconds
    value = tree.memory()
    while not predicate(value) and time.monotonic() < end:
        time.sleep(0.025)
        value = tree.memory()
    return value


def _ends(tree: CaseTree, proc: mp.Process, members: list[int]) -> None:
    tree.kill()
    proc.join(5)
    assert proc.exitcode is not None
    deadline = time.monotonic() + 5
    while tree.remaining() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert tree.remaining() == []
    for pid in members:
        with pytest.raises(psutil.NoSuchProcess):
            p = psutil.Process(pid)
            if p.status() == psutil.STATUS_ZOMBIE:
                raise psutil.NoSuchProcess(pid)
    assert tree.close()


@pytest.mark.parametrize("use_cgroup", MECHANISMS)
def test_a_detached_grandchild_is_a_member_and_dies_with_the_case(use_cgroup):
    tree, proc = _start(use_cgroup, _detach)
    def detached() -> list[int]:
        """The grandchild: in the session its parent created (not the worker's, not ours),
        not leading it (the session leader is the intermediate child, which exits)."""
        found = []
        for pid in tree.pids():
            try:
                sid = os.getsid(pid)
            except OSError:
                continue
            if sid not in (proc.pid, os.getsid(0), pid):
                found.append(pid)
        return found

    deadline = time.monotonic() + 10
    while not (detached() and len(tree.pids()) == 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    members = tree.pids()
    assert len(members) == 2 and proc.pid in members and len(detached()) == 1
    _ends(tree, proc, members)


def _late_start(cgroup_path: str | None) -> None:
    """A worker slow to reach ``enter_case`` (a loaded machine): the parent may kill the
    case before the worker joined its cgroup."""
    time.sleep(1.0)
    _worker(cgroup_path, time.sleep, 600)


@pytest.mark.parametrize("use_cgroup", MECHANISMS)
def test_a_case_killed_before_its_worker_entered_it_still_ends(use_cgroup):
    """Ctrl-C right after a case started: ``kill`` may come before the worker's first
    line ran. The worker is a member from ``attach`` on, so it dies with the case."""
    tree = CaseTree.create(use_cgroup=use_cgroup)
    proc = mp.get_context("fork").Process(target=_late_start, args=(tree.cgroup_path,))
    proc.start()
    tree.attach(proc.pid)
    tree.kill()
    proc.join(5)
    alive_after = proc.exitcode is None
    if alive_after:
        proc.kill()
        proc.join(5)
    assert not alive_after, "the worker outlived the kill of its case"
    deadline = time.monotonic() + 5
    while tree.remaining() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert tree.remaining() == []
    assert tree.close()


@pytest.mark.parametrize("use_cgroup", MECHANISMS)
def test_memory_of_a_detached_allocator_counts(use_cgroup):
    alloc = 600 * 2**20
    tree, proc = _start(use_cgroup, _detach, alloc)
    seen = _sample_until(tree, lambda v: v > 0.9 * alloc, 30)
    members = tree.pids()
    assert seen > 0.9 * alloc, f"saw {seen / 2**20:.0f} MiB of {alloc / 2**20:.0f} MiB"
    _ends(tree, proc, members)


@pytest.mark.parametrize("use_cgroup", MECHANISMS)
def test_idle_forked_helpers_add_little(use_cgroup):
    """Four forked helpers share the worker's pages (and lubench's): RSS would count them
    five times over; what the tree adds stays far below a 512 MiB limit."""
    parent_rss = psutil.Process().memory_info().rss
    tree, proc = _start(use_cgroup, _idle_helpers)
    deadline = time.monotonic() + 10
    while len(tree.pids()) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    members = tree.pids()
    assert len(members) == 5
    added = max(tree.memory() for _ in range(10))
    rss_sum = sum(psutil.Process(p).memory_info().rss for p in members)
    assert rss_sum > 4 * parent_rss * 0.5  # the naive count would be large
    assert added < 512 * 2**20
    assert added < parent_rss  # shared pages count at most half, the helpers' own are small
    _ends(tree, proc, members)


def _sender(end, n: int) -> None:
    from lubench.execution.local.channel import Sender

    out = Sender(end)
    out.send(("progress", {"step": 1}))
    out.send(("record", {"x": "y" * n}))
    orphan = os.fork()
    if orphan == 0:  # a child that keeps the write end open and never writes
        time.sleep(60)
        os._exit(0)
    with open(os.environ["ORPHAN_FILE"], "w") as fh:
        fh.write(str(orphan))
    os._exit(0)


def test_channel_never_blocks_on_a_pipe_a_descendant_holds(tmp_path, monkeypatch):
    monkeypatch.setenv("ORPHAN_FILE", str(tmp_path / "orphan"))
    receiver, sender = channel()
    proc = mp.get_context("fork").Process(target=_sender, args=(sender.fd, 300_000))
    proc.start()
    sender.close()
    messages: list = []
    deadline = time.monotonic() + 10
    while len(messages) < 2 and time.monotonic() < deadline:
        messages += receiver.receive()
        time.sleep(0.01)
    assert [m[0] for m in messages] == ["progress", "record"]
    assert len(messages[1][1]["x"]) == 300_000
    t0 = time.monotonic()
    assert receiver.receive() == []  # the orphan holds the pipe: nothing, and no wait
    assert time.monotonic() - t0 < 0.5
    assert not receiver.closed
    proc.join(5)
    os.kill(int((tmp_path / "orphan").read_text()), 9)  # it was re-parented to init
    receiver.close()


def test_a_partial_frame_waits_in_the_buffer():
    receiver, sender = channel()
    import pickle
    import struct

    data = pickle.dumps({"a": 1})
    frame = struct.pack("!Q", len(data)) + data
    os.write(sender.fd, frame[:5])
    assert receiver.receive() == []
    os.write(sender.fd, frame[5:] + frame)
    assert receiver.receive() == [{"a": 1}, {"a": 1}]
    sender.close()
    assert receiver.receive() == [] and receiver.closed


def test_alive_treats_zombies_as_gone():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    proc = psutil.Process(pid)
    time.sleep(0.2)  # exited, not reaped: a zombie
    assert not alive(proc)
    os.waitpid(pid, 0)


@pytest.mark.skipif(cgroup_root() is None, reason="cannot create a cgroup v2 here")
def test_a_group_left_by_a_killed_lubench_is_ended_and_removed():
    import subprocess

    from lubench.execution.local import cgroups

    stale = cgroup_root().path.parent / "lubench-999999"  # no such process
    (stale / "case-1").mkdir(parents=True)
    orphan = subprocess.Popen(["sleep", "60"])
    (stale / "case-1" / "cgroup.procs").write_text(str(orphan.pid))
    cgroups._remove_stale(stale.parent)
    assert orphan.wait(timeout=5) == -9
    deadline = time.monotonic() + 5
    while stale.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
        cgroups._remove_stale(stale.parent)
    assert not stale.exists()


def test_memory_samples_are_sparse_far_below_the_limit_and_dense_near_it():
    from lubench.execution.local.proctree import (
        FILL_RATE,
        SAMPLE_AT_MOST,
        SAMPLE_EVERY,
        sample_interval,
    )

    limit = 12 * 2**30
    assert sample_interval(2**28, limit) == SAMPLE_AT_MOST            # 0.25 GiB of 12
    assert sample_interval(limit - 2**20, limit) == SAMPLE_EVERY     # 1 MiB left
    assert sample_interval(limit + 2**30, limit) == SAMPLE_EVERY     # already over
    mid = sample_interval(limit - 10**9, limit)
    assert SAMPLE_EVERY < mid < SAMPLE_AT_MOST
    # however fast the tree fills, it cannot pass the limit by more than one short interval
    for used in (0, limit // 2, limit - 10**9, limit - 10**8):
        assert used + FILL_RATE * sample_interval(used, limit) <= max(
            limit, used + FILL_RATE * SAMPLE_EVERY)
