"""Operators read from files."""

from __future__ import annotations

import bz2
import gzip
import re
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

    The whole file is checked when the suite loads (:meth:`sizes`), so that a file no case
    could use is an error of the suite, not a failed case per method: a 0×0, non-square or
    complex matrix, a value that is not a number (``1,5``) or not finite (NaN, ±Inf, an
    overflow such as ``1e999``), fewer or more entries than the size line declares, an index
    out of range, a file shorter than its declared size could be (refused before anything
    is allocated for it). A ``.gz`` or ``.bz2`` file is checked and read decompressed, as
    SciPy's ``mmread`` reads it.

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
                                   f"relative to the suite file)", param="path")
        path = Path(self.path).expanduser()
        if not path.exists():
            raise InvalidParameter(f"matrix file not found: {path}", param="path")
        if not path.is_file():
            raise InvalidParameter(f"{path} is not a regular file (a folder, a device?); "
                                   f"give a .mtx file", param="path")
        return path

    def _read(self) -> tuple[int, object]:
        """(n, the matrix as mmread gives it), the file checked whole; cached per file
        version in this process."""
        path = self._file()
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _READ:
            _READ.clear()  # one file at a time: a matrix can be large
            _READ[key] = _checked(path, stat.st_size)
        return _READ[key]

    def sizes(self) -> list[int]:
        return [self._read()[0]]

    def check_size(self, n: int) -> None:
        size = self._read()[0]
        if n != size:
            raise InvalidParameter(f"{self.name}: {self._file()} is {size}×{size}, got n = {n}")

    def build(self, n: int, seed: int) -> Operator:
        self.check_size(n)
        raw = self._read()[1]
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


_READ: dict[tuple, tuple[int, object]] = {}
_READER_ERRORS = (ValueError, OSError, RuntimeError, OverflowError, IndexError, TypeError,
                  MemoryError, UnicodeDecodeError)
# what a value of a real or integer Matrix Market file may be made of (nan and inf
# included: they are named as non-finite below)
_NOT_A_NUMBER = re.compile(rb"[^0-9eE+\-.\s nNaAiIfFtTyY]")
# the suffixes mmread (scipy.io) opens as compressed, by the name alone, and their decompressors
_COMPRESSED = {".gz": gzip.decompress, ".bz2": bz2.decompress}


def _refuse(path: Path, problem: str) -> InvalidParameter:
    return InvalidParameter(f"{path}: {problem}", param="path")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _checked(path: Path, nbytes: int) -> tuple[int, object]:
    """Read ``path`` whole and check it (see :class:`MatrixMarket`)."""
    try:
        rows, cols, entries, fmt, field, symmetry = sio.mminfo(str(path))
    except _READER_ERRORS as exc:
        raise _refuse(path, f"not a readable Matrix Market file: {_first_line(exc)}") from None
    if rows != cols:
        raise _refuse(path, f"holds a {rows}×{cols} matrix; matrix_market needs a square one")
    if rows < 1:
        raise _refuse(path, f"holds a {rows}×{cols} matrix: nothing to factor")
    if field == "complex":
        raise _refuse(path, "holds a complex matrix; lubench factors real float64 operators")
    data = None
    unzip = _COMPRESSED.get(path.suffix)
    if unzip is not None:  # mmread decompresses it itself; so must the checks here
        try:
            data = unzip(path.read_bytes())
        except (*_READER_ERRORS, EOFError) as exc:
            raise _refuse(path, f"not a readable compressed file: {_first_line(exc)}") from None
        nbytes = len(data)
    # the fewest bytes the declared values take ("1 1 1\n" per entry, "1\n" per array value)
    if fmt == "array":
        values = rows * (rows + 1) // 2 if symmetry != "general" else rows * cols
        least = 2 * values
    else:
        values, least = entries, (4 if field == "pattern" else 6) * entries
    if least > nbytes:
        raise _refuse(path, f"declares {values:,} values but holds {nbytes:,} bytes "
                            f"(truncated?)")
    if data is None:
        data = path.read_bytes()
    body = _body(data)
    bad = _NOT_A_NUMBER.search(body)
    if bad is not None:
        start = body.rfind(b"\n", 0, bad.start()) + 1
        end = body.find(b"\n", bad.start())
        line = body[start:end if end >= 0 else None].decode("utf-8", "replace").strip()
        raise _refuse(path, f"{line[:60]!r} is not an entry of numbers")
    try:
        raw = sio.mmread(str(path))
    except _READER_ERRORS as exc:
        raise _refuse(path, f"not a readable Matrix Market file: {_first_line(exc)}") from None
    values = raw.data if sp.issparse(raw) else np.asarray(raw)
    try:
        finite = np.isfinite(values)
    except TypeError:
        raise _refuse(path, "holds values that are not real numbers") from None
    if not finite.all():
        count = int(np.size(finite) - np.count_nonzero(finite))
        kinds = sorted({"NaN" if np.isnan(v) else "Inf" for v in np.ravel(values)[
            ~np.ravel(finite)][:100]})
        raise _refuse(path, f"holds {count} value(s) that are not finite ({', '.join(kinds)}); "
                            f"lubench factors finite matrices")
    return int(rows), raw


def _body(data: bytes) -> bytes:
    """The entries of a Matrix Market file: what follows the header, the comments and the
    size line."""
    pos = 0
    seen_size = False
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        line = data[pos:end].strip()
        pos = end + 1
        if not line or line.startswith(b"%"):
            continue
        if not seen_size:
            seen_size = True
            return data[pos:]
    return b""


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
