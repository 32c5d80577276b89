"""Nothing outside the run directory is touched, and every OS error is one line.

Through the installed ``lubench`` command. The read-only and full-disk cases mount a small
tmpfs (root only; skipped elsewhere).
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from test_cli import lubench_exe
from test_containment import _env, _records, _run, _suite


def _one_line_error(out: subprocess.CompletedProcess, *words: str) -> str:
    assert "Traceback" not in out.stderr, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("lubench: error:")]
    assert len(lines) == 1, out.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def tiny_fs(tmp_path):
    """A 1 MiB tmpfs, or skip."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_output_below_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    suite = _suite(tmp_path, [{"name": "escape_lu"}])
    out = _run("run", suite, "-o", tmp_path / "afile" / "sub", "--no-report")
    assert out.returncode == 2
    _one_line_error(out, str(tmp_path / "afile"))


def test_output_in_proc(tmp_path):
    suite = _suite(tmp_path, [{"name": "escape_lu"}])
    out = _run("run", suite, "-o", "/proc/x", "--no-report")
    assert out.returncode == 2
    _one_line_error(out, "/proc/x")


def test_output_on_a_read_only_file_system(tmp_path, tiny_fs):
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)], check=True)
    suite = _suite(tmp_path, [{"name": "escape_lu"}])
    out = _run("run", suite, "-o", tiny_fs / "run", "--no-report")
    assert out.returncode == 2
    _one_line_error(out, str(tiny_fs / "run"), "Read-only file system")


def test_output_into_a_directory_that_is_not_a_run_directory(tmp_path):
    other = tmp_path / "mine"
    (other / "report").mkdir(parents=True)
    (other / "report" / "report.html").write_text("my own report")
    (other / "suite.yaml").write_text("my own suite")
    suite = _suite(tmp_path, [{"name": "escape_lu"}])
    out = _run("run", suite, "-o", other)
    assert out.returncode == 2
    _one_line_error(out, str(other), "not empty")
    assert (other / "report" / "report.html").read_text() == "my own report"
    assert sorted(p.name for p in other.iterdir()) == ["report", "suite.yaml"]
    assert (other / "suite.yaml").read_text() == "my own suite"


def test_an_empty_directory_is_accepted(tmp_path):
    (tmp_path / "empty").mkdir()
    suite = _suite(tmp_path, [{"name": "escape_lu"}])
    out = _run("run", suite, "-o", tmp_path / "empty", "--no-report", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert _records(tmp_path / "empty")[0]["status"] == "ok"


def test_a_planted_records_symlink_is_refused_and_its_target_untouched(tmp_path):
    suite = _suite(tmp_path, [{"name": "escape_lu"}], sizes=(8, 9))
    run = tmp_path / "run"
    out = _run("run", suite, "-o", run, "-k", "esc_op[n=8]", "--no-report", "--no-progress")
    assert out.returncode == 0, out.stderr
    elsewhere = tmp_path / "elsewhere.jsonl"
    elsewhere.write_text("precious\n")
    (run / "records.jsonl").unlink()
    (run / "records.jsonl").symlink_to(elsewhere)
    out = _run("run", suite, "--resume", run, "--no-report", "--no-progress")
    assert out.returncode == 2
    _one_line_error(out, "records.jsonl", "symbolic link")
    assert elsewhere.read_text() == "precious\n"


def test_a_planted_report_symlink_is_refused(tmp_path):
    suite = _suite(tmp_path, [{"name": "escape_lu"}])
    run = tmp_path / "run"
    out = _run("run", suite, "-o", run, "--no-report", "--no-progress")
    assert out.returncode == 0, out.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run / "report").symlink_to(elsewhere)
    out = _run("report", run)
    assert out.returncode == 2
    _one_line_error(out, "report", "symbolic link")
    assert list(elsewhere.iterdir()) == []


def test_a_full_disk_during_a_run_keeps_the_records_and_says_how_to_resume(tmp_path, tiny_fs):
    suite = _suite(tmp_path, [{"name": "escape_lu", "params": {"behave": "sleep",
                                                               "seconds": 0.4}}],
                   sizes=tuple(range(8, 40)))
    run = tiny_fs / "run"
    proc = subprocess.Popen([lubench_exe(), "run", str(suite), "-o", str(run), "--no-report",
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        path = run / "records.jsonl"
        if path.exists() and path.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.05)
    fd = os.open(tiny_fs / "filler", os.O_WRONLY | os.O_CREAT)  # take what is left
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    out = subprocess.CompletedProcess([], proc.returncode, "", stderr)
    _one_line_error(out, "No space left on device", "--resume")
    kept = _records(run)
    assert len(kept) >= 2 and all(r["status"] == "ok" for r in kept)
    report = _run("report", run)
    assert report.returncode == 2
    _one_line_error(report, "No space left on device")
    os.unlink(tiny_fs / "filler")
    resumed = _run("run", suite, "--resume", run, "--no-report", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    ids = [(r["case_id"], r["repeat"]) for r in _records(run)]
    assert len(ids) == len(set(ids)) == 32
    json.loads((run / "meta.json").read_text())


# --------------------------------------------------------------------------------------------
# What is a run directory (issue 25): a meta.json lubench wrote, never a name alone
# --------------------------------------------------------------------------------------------
def _first_half(tmp_path):
    """A run of the first of two sizes, so that a --resume has a case left to run."""
    suite = _suite(tmp_path, [{"name": "escape_lu"}], sizes=(8, 9))
    run = tmp_path / "run"
    out = _run("run", suite, "-o", run, "-k", "esc_op[n=8]", "--no-report", "--no-progress")
    assert out.returncode == 0, out.stderr
    return suite, run


def test_a_folder_holding_a_users_meta_json_is_not_a_run_directory(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "meta.json").write_text('{"mine":1}\n')
    (mine / "notes.txt").write_text("x\n")
    suite = _suite(tmp_path, [{"name": "escape_lu"}])
    out = _run("run", suite, "-o", mine, "--no-report", "--no-progress")
    assert out.returncode == 2
    _one_line_error(out, str(mine), "not a run directory")
    assert (mine / "meta.json").read_text() == '{"mine":1}\n'
    assert sorted(p.name for p in mine.iterdir()) == ["meta.json", "notes.txt"]


@pytest.mark.parametrize("files", [{"records.jsonl": '{"case_id": "mine"}\n'},
                                   {"meta.json": '{"mine": 1}\n'},
                                   {"records.jsonl": ""}])
def test_resume_refuses_a_folder_lubench_did_not_write(tmp_path, files):
    mine = tmp_path / "mine"
    mine.mkdir()
    for name, text in files.items():
        (mine / name).write_text(text)
    suite = _suite(tmp_path, [{"name": "escape_lu"}])
    out = _run("run", suite, "--resume", mine, "--no-report", "--no-progress")
    assert out.returncode == 2
    _one_line_error(out, str(mine), "not a run directory")
    assert {p.name: p.read_text() for p in mine.iterdir()} == files


def test_a_planted_cache_link_is_refused_on_resume(tmp_path):
    suite, run = _first_half(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for p in (run / "cache").iterdir():
        p.unlink()
    (run / "cache").rmdir()
    (run / "cache").symlink_to(elsewhere)
    out = _run("run", suite, "--resume", run, "--no-report", "--no-progress")
    assert out.returncode == 2
    _one_line_error(out, "cache", "symbolic link")
    assert list(elsewhere.iterdir()) == []


def test_an_output_folder_that_is_a_link_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "run").symlink_to(target)
    suite = _suite(tmp_path, [{"name": "escape_lu"}])
    out = _run("run", suite, "-o", tmp_path / "run", "--no-report", "--no-progress")
    assert out.returncode == 2
    _one_line_error(out, "run", "symbolic link")
    assert list(target.iterdir()) == []


def test_records_hard_linked_to_a_users_file_are_not_appended_to(tmp_path):
    suite, run = _first_half(tmp_path)
    precious = tmp_path / "precious.jsonl"
    os.replace(run / "records.jsonl", precious)
    os.link(precious, run / "records.jsonl")
    before = precious.read_bytes()
    out = _run("run", suite, "--resume", run, "--no-report", "--no-progress")
    assert out.returncode == 2
    _one_line_error(out, "records.jsonl", "hard link")
    assert precious.read_bytes() == before


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_records_that_are_no_file_are_refused_not_waited_on(tmp_path, kind):
    suite, run = _first_half(tmp_path)
    (run / "records.jsonl").unlink()
    if kind == "fifo":
        os.mkfifo(run / "records.jsonl")
    else:
        (run / "records.jsonl").mkdir()
    out = _run("run", suite, "--resume", run, "--no-report", "--no-progress", timeout=60)
    assert out.returncode == 2
    _one_line_error(out, "records.jsonl")
