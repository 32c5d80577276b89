"""``RUN_DIR/fits/``: the methods trained across instances, kept so that no training is lost.

A fit (:data:`lubench.suite.cases.FIT`) pickles the fitted method — what it learned lives on
it — together with its training time into ``fits/<fit case_id>.pkl``, written atomically
(a fresh file, fsync'd, renamed; never through a link) *before* the fit's record is appended.
So a fit whose record says ``ok`` has its file; a run killed during training has neither,
and ``--resume`` trains again (it never finished); a run killed after it resumes with the
file, and its test cases factorize with that method without training again.

Outside a run directory (a case run on its own, the checks of ``lubench.testing``) the
fitted methods are kept in the process (:data:`IN_PROCESS`).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from lubench.errors import LubenchError
from lubench.rundir.fsafe import atomic_write, no_link, real_dir

__all__ = ["FitStore", "FITS", "IN_PROCESS"]

FITS = "fits"
#: fit id → payload, where no run directory keeps them.
IN_PROCESS: dict[str, dict[str, Any]] = {}


class FitStore:
    """Fitted methods by fit id: ``fits/<id>.pkl`` of a run directory, or (``folder`` None)
    the process's :data:`IN_PROCESS`."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder) if folder is not None else None

    def _path(self, fit_id: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{fit_id}.pkl"

    def save(self, fit_id: str, method: Any, train_seconds: float) -> None:
        """Keep ``method`` (fitted) and its training time. Raises :class:`LubenchError`
        (one line: the path and the cause) when it cannot be written, or TypeError/
        PicklingError when the method does not pickle."""
        payload = {"method": method, "train_seconds": float(train_seconds)}
        if self.folder is None:
            IN_PROCESS[fit_id] = payload
            return
        data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        real_dir(self.folder)
        atomic_write(self._path(fit_id), data)

    def load(self, fit_id: str) -> dict[str, Any]:
        """``{"method": ..., "train_seconds": ...}`` of a fit; :class:`LubenchError` naming
        what is missing when it was never kept."""
        if self.folder is None:
            if fit_id not in IN_PROCESS:
                raise LubenchError(f"the fit {fit_id} has not run in this process")
            return IN_PROCESS[fit_id]
        path = self._path(fit_id)
        try:
            no_link(path)
            with open(path, "rb") as fh:
                return pickle.load(fh)
        except FileNotFoundError:
            raise LubenchError(f"{path}: the fitted method is missing (its fit's record says "
                               f"ok; run the fit again with --retry ok or a new run)") from None
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
            raise LubenchError(f"{path}: cannot read the fitted method "
                               f"({type(exc).__name__}: {exc})") from None
