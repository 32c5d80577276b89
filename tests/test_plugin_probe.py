"""A plugin that crashes, hangs or exits at import is found out in a child, not in lubench."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from test_cli import lubench_exe, write_suite

from lubench.registry.probe import probe_import

BAD = Path(__file__).resolve().parent / "fixtures" / "plugins_bad"


def _importer(name: str):
    def do_import() -> None:
        spec = importlib.util.spec_from_file_location(f"probe_{name}", BAD / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

    return do_import


def test_a_segfault_at_import_is_a_reason():
    reason = probe_import(_importer("import_segfault"), timeout=30)
    assert reason is not None and reason.startswith("import crashed (SIGSEGV)")


def test_a_hang_at_import_is_killed_after_the_timeout():
    t0 = time.monotonic()
    reason = probe_import(_importer("import_hang"), timeout=1.0)
    assert time.monotonic() - t0 < 5
    assert reason is not None and "did not finish within 1 s" in reason
    assert not [c for c in psutil.Process().children(recursive=True)
                if c.status() != psutil.STATUS_ZOMBIE]


def test_os_exit_at_import_is_a_reason():
    reason = probe_import(_importer("import_exit"), timeout=30)
    assert reason is not None and reason.startswith("import ended the process")


def test_an_exception_at_import_is_left_to_the_real_import():
    assert probe_import(_importer("import_sysexit"), timeout=30) is None
    assert probe_import(lambda: None, timeout=30) is None


# --------------------------------------------------------------------------------------------
# contained(): any call, its crumbs and problems (the suite's entries run through it)
# --------------------------------------------------------------------------------------------
def _calls_then(what: str):
    def call(channel):
        channel.problem("found on the way")
        channel.crumb("methods[0]: the plugin call")
        if what == "segfault":
            import ctypes

            ctypes.string_at(0)
        if what == "exit":
            import os

            os._exit(0)
        if what == "hang":
            time.sleep(600)
        return {"value": 1}

    return call


@pytest.mark.parametrize("what, failure", [("segfault", "crashed (SIGSEGV)"),
                                           ("exit", "ended the process (exit status 0)"),
                                           ("hang", "did not finish within 1 s"),
                                           ("ok", None)])
def test_contained_names_the_call_it_died_in_and_keeps_the_problems(what, failure):
    from lubench.registry.probe import contained

    outcome = contained(_calls_then(what), timeout=1.0)
    assert outcome.problems == ["found on the way"]
    assert outcome.crumb == "methods[0]: the plugin call"
    if failure is None:
        assert outcome.ok and outcome.value == {"value": 1}
    else:
        assert outcome.failure.startswith(failure)
    assert not [c for c in psutil.Process().children(recursive=True)
                if c.status() != psutil.STATUS_ZOMBIE]


def test_contained_ends_what_the_call_detached():
    from lubench.registry.probe import contained

    def call(channel):
        import os

        if os.fork() == 0:  # a daemon: its own session, outliving the call
            os.setsid()
            with open(pid_file, "w") as fh:
                fh.write(str(os.getpid()))
            time.sleep(600)
            os._exit(0)
        time.sleep(0.5)
        return None

    import tempfile

    pid_file = tempfile.mktemp()
    assert contained(call, timeout=30).ok
    pid = int(Path(pid_file).read_text())
    Path(pid_file).unlink()
    time.sleep(0.2)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


# --------------------------------------------------------------------------------------------
# Plugin code at load, through the installed `lubench` (issue 25, item 2)
# --------------------------------------------------------------------------------------------
HOSTILE = Path(__file__).resolve().parent / "fixtures" / "hostile_plugin.py"


def _hostile(tmp_path: Path, where: str, what: str, *args: str, timeout: str = "5",
             **top) -> subprocess.CompletedProcess:
    suite = write_suite(tmp_path, {"name": "h", "device": "cpu", "plugins": [str(HOSTILE)],
                                   "operators": [{"name": "h_op", "sizes": [8]}],
                                   "methods": [{"name": "h_lu"}], **top})
    env = {**os.environ, "HOSTILE_WHERE": where, "HOSTILE_WHAT": what,
           "LUBENCH_PLUGIN_IMPORT_TIMEOUT": timeout, "OMP_NUM_THREADS": "1"}
    return subprocess.run([lubench_exe(), "run", str(suite), "-o", str(tmp_path / "run"),
                           "--no-report", "--no-progress", *args], capture_output=True,
                          text=True, env=env, timeout=120, cwd=tmp_path)


@pytest.mark.parametrize("where, what, says", [
    ("check_params", "raise", "methods[0].params: method 'h_lu' (plugin 'hostile_plugin'): "
                              "check_params raised RuntimeError: boom in check_params"),
    ("check_params", "exit0", "check_params raised SystemExit: 0"),
    ("check_params", "segfault", "methods[0].params: method 'h_lu' (plugin 'hostile_plugin'): "
                                 "check_params crashed (SIGSEGV)"),
    ("check_params", "os_exit", "check_params ended the process (exit status 0)"),
    ("check_params", "hang", "check_params did not finish within 2 s"),
    ("check_size", "raise", "operators[0].sizes[0]: operator 'h_op' (plugin 'hostile_plugin'):"
                            " check_size(8) raised RuntimeError"),
    ("check_size", "segfault", "check_size(8) crashed (SIGSEGV)"),
    ("sizes", "hang", "operators[0]: operator 'h_op' (plugin 'hostile_plugin'): sizes did not "
                      "finish"),
    ("init", "keyboard", "methods[0].params: method 'h_lu' (plugin 'hostile_plugin'): "
                         "constructor raised KeyboardInterrupt"),
    ("get_params", "raise", "get_params raised RuntimeError"),
    ("hook_methods", "segfault", "plugin 'hostile_plugin'"),
])
def test_plugin_code_at_load_is_the_plugins_error_never_lubenchs(tmp_path, where, what, says):
    t0 = time.monotonic()
    out = _hostile(tmp_path, where, what, *(["--dry-run"] if what == "hang" else []),
                   timeout="2")
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("lubench: error:")]
    assert len(errors) == 1 and says in out.stderr, out.stderr
    assert not (tmp_path / "run").exists()
    assert time.monotonic() - t0 < 60


def test_a_plugins_output_at_import_is_counted_not_shown(tmp_path):
    out = _hostile(tmp_path, "import", "print50m")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout) < 10_000
    assert "plugin 'hostile_plugin' wrote 50.0 MiB on stdout/stderr while imported " \
           "(not shown)" in out.stderr


def test_a_plugin_that_changes_directory_at_import_does_not_move_the_run(tmp_path):
    out = _hostile(tmp_path, "import", "chdir")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "run" / "records.jsonl").is_file()


@pytest.mark.parametrize("value", ["abc", "-5", "0", "nan", "inf"])
def test_a_bad_import_timeout_is_bad_input(tmp_path, value):
    out = _hostile(tmp_path, "none", "none", "--dry-run", timeout=value)
    assert out.returncode == 2
    assert out.stderr.startswith(f"lubench: error: LUBENCH_PLUGIN_IMPORT_TIMEOUT={value!r}")


def test_check_plugin_reports_a_crashing_check_and_goes_on(tmp_path):
    env = {**os.environ, "HOSTILE_WHERE": "factorize", "HOSTILE_WHAT": "segfault"}
    out = subprocess.run([lubench_exe(), "check-plugin", "h_lu", "--plugin", str(HOSTILE)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 1, out.stderr
    assert "FAIL  check_factorize_tiny: expected the check to run; got crashed (SIGSEGV)" \
        in out.stdout
    assert "  PASS  check_name" in out.stdout  # the checks before it passed, and every
    assert out.stdout.splitlines()[-1].startswith("4 passed")  # check after it ran


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_a_plugin_hangs_at_load_ends_lubench_and_the_probe(tmp_path, sig,
                                                                          status):
    suite = write_suite(tmp_path, {"name": "h", "plugins": [str(HOSTILE)],
                                   "operators": [{"name": "h_op", "sizes": [8]}],
                                   "methods": [{"name": "h_lu"}]})
    marker = f"lubench-test-{os.getpid()}-{sig}"
    env = {**os.environ, "HOSTILE_WHERE": "import", "HOSTILE_WHAT": "hang",
           "LUBENCH_TEST_MARKER": marker}
    proc = subprocess.Popen([lubench_exe(), "run", str(suite), "--dry-run"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    time.sleep(4)  # the probe's child is importing the plugin, which hangs
    os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == status, stderr
    assert f"lubench: interrupted ({signal.Signals(sig).name})" in stderr
    assert "Traceback" not in stderr and "Aborted!" not in stderr
    time.sleep(0.5)
    left = []
    for p in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if p.environ().get("LUBENCH_TEST_MARKER") == marker and \
                    p.status() != psutil.STATUS_ZOMBIE:
                left.append(p.pid)
                p.kill()
    assert left == []
