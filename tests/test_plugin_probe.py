"""A plugin that crashes, hangs or exits at import is found out in a child, not in lubench."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import psutil

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
