"""``RUN_DIR/cache/``: what grading computes once per operator, shared by the run's workers.

Each entry is a small JSON file named by a digest of its key (``gmres-<digest>.json``),
holding the key itself (a file whose key differs — a digest collision, another version's
file — reads as absent) and the values. The freshly forked worker of every later case reads
what an earlier one wrote instead of computing it again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lubench.errors import LubenchError
from lubench.rundir.fsafe import atomic_write, real_dir

__all__ = ["FolderCache"]


class FolderCache:
    """A folder of JSON entries by (kind, key), written atomically and never through a link
    (:mod:`lubench.rundir.fsafe`). Best effort both ways: an entry that is missing or
    unreadable reads as None, and a write that fails (a full disk) costs only a later
    recomputation. The folder is created by the first write."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def _path(self, kind: str, key: str) -> Path:
        digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
        return self.folder / f"{kind}-{digest}.json"

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        """The values stored for (``kind``, ``key``), or None."""
        try:
            data = json.loads(self._path(kind, key).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        return {k: v for k, v in data.items() if k != "key"}

    def put(self, kind: str, key: str, values: dict[str, Any]) -> None:
        """Store ``values`` (JSON-serialisable) for (``kind``, ``key``)."""
        try:
            real_dir(self.folder)
            atomic_write(self._path(kind, key), json.dumps({"key": key, **values}))
        except (OSError, LubenchError):
            pass
