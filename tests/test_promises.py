"""docs/promises.md names, for each promise, the test that checks it: every test it names
exists (a renamed or deleted test would leave a promise that nothing checks)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_every_test_the_promises_page_names_exists():
    text = (REPO / "docs" / "promises.md").read_text(encoding="utf-8")
    current = None
    named = []
    for ref in re.findall(r"`((?:test_\w+\.py)?(?:::\w+)?)`", text):
        module, _, name = ref.partition("::")
        if module:
            current = module
        if name:
            assert current is not None, f"{ref}: no test module before it"
            named.append((current, name))
        elif module:
            assert (REPO / "tests" / module).is_file(), f"{module}: no such test module"
    assert len(named) > 20
    missing = [f"{module}::{name}" for module, name in named
               if not re.search(rf"^def {name}\(", (REPO / "tests" / module).read_text(
                   encoding="utf-8"), re.M)]
    assert not missing, f"docs/promises.md names tests that do not exist: {missing}"
