"""The display of a run (lubench.execution.progress): a bar in a terminal, lines in a log."""

from __future__ import annotations

from lubench.execution.progress import Display

OK = {"status": "ok", "wall_seconds": 0.25}
FAILED = {"status": "failed", "wall_seconds": 1.5, "error": "RuntimeError: boom"}
TIMEOUT = {"status": "timeout", "wall_seconds": 10.0, "error": "exceeded the 10 s timeout"}


def test_without_a_terminal_every_case_is_one_line(capsys):
    display = Display(3, show=False)
    display.finished(OK, "a[n=8] × plu")
    display.finished(FAILED, "b[n=8] × plu")
    display.finished(TIMEOUT, "c[n=8] × plu")
    display.close()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split()[0] for line in lines] == ["ok", "failed", "timeout"]
    assert lines[1].endswith("b[n=8] × plu  1.5s  RuntimeError: boom")


def test_in_a_terminal_the_bar_and_one_line_per_case_not_ok(capsys):
    display = Display(3, show=True)
    display.finished(OK, "a[n=8] × plu")
    display.finished(FAILED, "b[n=8] × plu")
    display.finished(TIMEOUT, "c[n=8] × plu")
    display.close()
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines()
             if line.split() and line.split()[0] in ("ok", "failed", "timeout")]
    assert [line.split()[0] for line in lines] == ["failed", "timeout"]
    assert "3/3" in err  # the bar itself
