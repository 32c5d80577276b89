"""Operators read from files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lubench.api import InvalidParameter, Operator, OperatorGenerator
from lubench.lazy import lazy_module

sio = lazy_module("scipy.io")
sp = lazy_module("scipy.sparse")

__all__ = ["MatrixMarket", "SPD_CHECK_LIMIT"]

SPD_CHECK_LIMIT = 4096  # up to this n a dense Cholesky decides `spd`; above it stays None


class MatrixMarket(OperatorGenerator):
    """A square matrix read from a Matrix Market (.mtx) file with scipy.io.mmread.

    n is the file's (a suite entry needs no ``sizes``). Coordinate files give a CSR matrix,
    array files a dense one, both float64; ``symmetric``/``skew-symmetric`` headers are
    expanded by SciPy; complex files are refused. ``symmetric`` is tested exactly
    (A == Aᵀ); ``spd`` is True when A is symmetric and a dense Cholesky succeeds
    (n ≤ 4096), False when it fails or A is not symmetric, None (unknown) above 4096.
    The seed is not used. ``coords`` are the row indices.

    Parameters
    ----------
    path : Path
        The .mtx file; in a suite, relative to the suite file's folder.
    """

    name = "matrix_market"

    def __init__(self, path: Path | None = None):
        self.path = path

    def _file(self) -> Path:
        if self.path is None or str(self.path) == "":
            raise InvalidParameter(f"{self.name} needs a 'path' parameter (a .mtx file, "
                                   f"relative to the suite file)")
        path = Path(self.path).expanduser()
        if not path.is_file():
            raise InvalidParameter(f"matrix file not found: {path}")
        return path

    def _size(self) -> int:
        path = self._file()
        try:
            rows, cols, _entries, _fmt, field, _symmetry = sio.mminfo(str(path))
        except (ValueError, OSError, RuntimeError) as exc:
            raise InvalidParameter(f"{path} is not a readable Matrix Market file: "
                                   f"{str(exc).strip().splitlines()[0] if str(exc) else exc!r}"
                                   ) from None
        if rows != cols:
            raise InvalidParameter(f"{path} holds a {rows}×{cols} matrix; {self.name} needs a "
                                   f"square one")
        if field == "complex":
            raise InvalidParameter(f"{path} holds a complex matrix; lubench factors real "
                                   f"float64 operators")
        return int(rows)

    def sizes(self) -> list[int]:
        return [self._size()]

    def check_size(self, n: int) -> None:
        size = self._size()
        if n != size:
            raise InvalidParameter(f"{self.name}: {self._file()} is {size}×{size}, got n = {n}")

    def build(self, n: int, seed: int) -> Operator:
        self.check_size(n)
        raw = sio.mmread(str(self._file()))
        if sp.issparse(raw):
            A = sp.csr_array(raw, dtype=np.float64)
            A.sum_duplicates()
            symmetric = (A != A.T).nnz == 0
        else:
            A = np.ascontiguousarray(raw, dtype=np.float64)
            symmetric = bool(np.array_equal(A, A.T))
        params = {"path": str(self.path)}
        return Operator(self.name, A, symmetric=symmetric, spd=_spd(A, symmetric),
                        coords=np.arange(n, dtype=np.float64)[:, None], params=params)


def _spd(A: np.ndarray | sp.csr_array, symmetric: bool) -> bool | None:
    """True/False when a dense Cholesky can decide (n ≤ SPD_CHECK_LIMIT), else None."""
    if not symmetric:
        return False
    diag = A.diagonal()
    if np.any(diag <= 0):
        return False
    if A.shape[0] > SPD_CHECK_LIMIT:
        return None
    dense = A.toarray() if sp.issparse(A) else A
    try:
        np.linalg.cholesky(dense)
    except np.linalg.LinAlgError:
        return False
    return True
