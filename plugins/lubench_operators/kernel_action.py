"""The action of a kernel matrix that is never formed, compiled with Numba.

Two actions, each one pass over the kernel whatever the number k of columns:

* :func:`kernel_matmat` — Y = K X for K_ij = f(‖p_i − p_j‖) on n points, O(n²·(d + k)):
  the points are cut into tiles of ``TILE``; K being symmetric, only the blocks (I, J) with
  J ≥ I of the tile grid are evaluated, each once (``TILE × TILE`` doubles, 512 KiB: it stays
  in the core's cache), and multiplied both ways (K_IJ X_J into Y_I, K_IJᵀ X_I into Y_J) into
  every column panel of X (``K_CHUNK`` columns at a time, so that the panel stays in cache
  too), one single-threaded BLAS ``dgemm`` per panel. The tile pairs are shared out among the
  threads (``prange``, see :func:`_tiles`), each adding into its own accumulator. Memory
  beyond X and Y: one block, one panel product and one n × k accumulator per thread. The
  accumulators are added in a fixed order, so Y is the same from run to run at a given
  number of threads; another number of threads groups the sums otherwise (a difference of
  round-off: 3e-16 of max|Y| measured at n = 2000, one thread against two).
* :func:`chain_matmat` — Y = A X for the exponential kernel on sorted 1D points,
  A_ij = Π_{m=min(i,j)+1}^{max(i,j)} t_m with t_m = e^{−(x_m − x_{m−1})/ℓ} (= e^{−|x_i−x_j|/ℓ}),
  by its two recurrences (REFERENCE.md, "Exact O(n) actions") in O(n·k):
  f_i = X_i + t_i f_{i−1} (forward), b_i = t_{i+1}(X_{i+1} + b_{i+1}) (backward), Y = f + b.
  Each step rounds once or twice, so an entry at distance D = |x_i − x_j| carries a relative
  error of about √(D/h)·ε (h the mean spacing: the roundings of the t_m are independent), far
  below the errors the benchmark grades.

The exponential is evaluated by :func:`_exp` (Cody–Waite reduction, a degree-13 Taylor
polynomial, the power of two assembled in the exponent bits), which the compiler vectorizes
(``math.exp`` calls libm once per value, three to four times slower here); it is within 1 ulp
of ``numpy.exp`` on [−708, 0] and returns 0 below −708 (an absolute error under 1e-307).

Imported only where an action is computed: registering the plugin does not import Numba.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import types
from numba.extending import intrinsic

__all__ = ["kernel_matmat", "chain_matmat", "KINDS", "TILE", "K_CHUNK"]

#: The kernel functions f(r), by the code the compiled loops take.
KINDS = {"gaussian": 0, "exponential": 1, "matern32": 2, "matern52": 3}
TILE = 256      # points per tile: a block of K is 256 × 256, 512 KiB
K_CHUNK = 64    # columns of X multiplied at once: a 256 × 64 panel, 128 KiB

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 to 32 bits: k·LN2_HI is exact for |k| < 2¹⁰
_LN2_LO = 1.90821492927058770002e-10


@intrinsic
def _bits_as_float(typingctx, bits):  # noqa: ARG001 - Numba's intrinsic signature
    """The float64 whose IEEE bits are the int64 ``bits`` (a register move)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):  # noqa: ARG001
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@njit(inline="always", cache=True)
def _exp(x):
    """e^x for x ≤ 0: x = k·ln 2 + r with |r| ≤ ln 2 / 2 (Cody–Waite, two-part ln 2),
    e^r by its Taylor polynomial of degree 13 (truncation below 5e-18 relative) in Horner
    form, times 2^k built in the exponent field. 0 below −708 (where 2^k is subnormal)."""
    xc = max(x, -708.0)
    k = math.floor(xc * _LOG2E + 0.5)
    r = (xc - k * _LN2_HI) - k * _LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    value = p * _bits_as_float((np.int64(k) + 1023) << 52)
    return value if x >= -708.0 else 0.0


@njit(cache=True)
def exp_array(x):
    """:func:`_exp` elementwise (for tests of its accuracy)."""
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = _exp(x[i])
    return out


@njit(cache=True)
def _fill_block(PT, r0, c0, kind, scale, block, d2):
    """block[i, j] = f(‖p_{r0+i} − p_{c0+j}‖): squared distances coordinate by coordinate,
    then the kernel function, each a loop over j that the compiler vectorizes."""
    dim = PT.shape[0]
    h, w = block.shape
    for i in range(h):
        for j in range(w):
            d2[j] = 0.0
        for a in range(dim):
            pa = PT[a, r0 + i]
            for j in range(w):
                diff = pa - PT[a, c0 + j]
                d2[j] += diff * diff
        if kind == 0:      # Gaussian: exp(−r²/(2ℓ²)), scale = 1/(2ℓ²)
            for j in range(w):
                block[i, j] = _exp(-d2[j] * scale)
        elif kind == 1:    # exponential (Matérn 1/2): exp(−r/ℓ), scale = 1/ℓ
            for j in range(w):
                block[i, j] = _exp(-math.sqrt(d2[j]) * scale)
        elif kind == 2:    # Matérn 3/2: (1 + t) e^{−t}, t = √3 r/ℓ
            for j in range(w):
                t = math.sqrt(d2[j]) * scale
                block[i, j] = (1.0 + t) * _exp(-t)
        else:              # Matérn 5/2: (1 + t + t²/3) e^{−t}, t = √5 r/ℓ
            for j in range(w):
                t = math.sqrt(d2[j]) * scale
                block[i, j] = (1.0 + t + t * t / 3.0) * _exp(-t)


@njit(parallel=True, cache=True)
def _tiles(PT, X3, kind, scale, slots):
    """K X3[q] for every column chunk q (X3: chunks × n × kc, C order), K symmetric: the
    blocks (I, J) with J ≥ I of the tile grid are evaluated, each once, and multiplied both
    ways. Slot s (one per thread) takes the tile pairs (p, T − 1 − p) for p = s, s + slots, …
    — each pair holds T + 1 blocks, so the slots' work is equal — into its own accumulator;
    the accumulators are added in slot order."""
    n = PT.shape[1]
    chunks, _, kc = X3.shape
    T = (n + TILE - 1) // TILE
    acc = np.zeros((slots, chunks, n, kc))
    pairs = (T + 1) // 2
    for s in prange(slots):
        d2 = np.empty(TILE)
        prod = np.empty((TILE, kc))
        for p in range(s, pairs, slots):
            for u in range(2):
                I = p if u == 0 else T - 1 - p
                if u == 1 and I == p:
                    continue
                r0 = I * TILE
                h = min(n, r0 + TILE) - r0
                for J in range(I, T):
                    c0 = J * TILE
                    w = min(n, c0 + TILE) - c0
                    block = np.empty((h, w))
                    _fill_block(PT, r0, c0, kind, scale, block, d2)
                    for q in range(chunks):
                        out = prod[:h]
                        np.dot(block, X3[q, c0:c0 + w], out)
                        acc[s, q, r0:r0 + h] += out
                        if J > I:
                            out = prod[:w]
                            np.dot(block.T, X3[q, r0:r0 + h], out)
                            acc[s, q, c0:c0 + w] += out
    Y3 = acc[0].copy()
    for s in range(1, slots):
        Y3 += acc[s]
    return Y3


@njit(cache=True)
def _chain(t, cf, cb, X, B):
    """A X by the forward and backward recurrences, restarted every B points (module
    docstring): t[i] = A[i, i−1]; cf[i] = A[i, s−1] and cb[i] = A[i, e+1] for i in the block
    [s, e] (the first block's cf and the last one's cb unused)."""
    n, k = X.shape
    Y = np.empty_like(X)
    g = np.zeros(k)
    F = np.zeros(k)
    for s in range(0, n, B):
        e = min(n, s + B) - 1
        for i in range(s, e + 1):
            ci = cf[i] if s > 0 else 0.0
            if i == s:
                for c in range(k):
                    g[c] = X[i, c]
            else:
                ti = t[i]
                for c in range(k):
                    g[c] = X[i, c] + ti * g[c]
            for c in range(k):
                Y[i, c] = g[c] + ci * F[c]
        for c in range(k):
            F[c] = Y[e, c]
    h = np.zeros(k)
    b = np.zeros(k)  # b_i = Σ_{j>i} A_ij X_j
    G = np.zeros(k)  # X[e+1] + b[e+1] of the block after
    for s in range((n - 1) // B * B, -1, -B):
        e = min(n, s + B) - 1
        for c in range(k):
            h[c] = 0.0
        for i in range(e, s - 1, -1):
            ci = cb[i] if e < n - 1 else 0.0
            if i < e:
                ti = t[i + 1]
                for c in range(k):
                    h[c] = ti * (X[i + 1, c] + h[c])
            for c in range(k):
                b[c] = h[c] + ci * G[c]
                Y[i, c] += b[c]
        for c in range(k):
            G[c] = X[s, c] + b[c]
    return Y


_CONTROLLER = None


def _one_blas_thread():
    """A context in which BLAS runs single-threaded (each Numba thread calls ``dgemm`` on
    its own block; a threaded BLAS under them would oversubscribe the cores)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        import scipy.linalg.cython_blas  # noqa: F401 - the BLAS Numba calls, loaded first
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def _threads() -> int:
    """Numba threads for one action: ``NUMBA_NUM_THREADS``, and no more than the worker's
    ``OMP_NUM_THREADS`` (lubench sets it to the cores per case)."""
    most = numba.config.NUMBA_NUM_THREADS
    try:
        limit = int(os.environ.get("OMP_NUM_THREADS", most))
    except ValueError:
        limit = most
    return max(1, min(most, limit))


def _forksafe_threading() -> None:
    """Cases run in forked workers, and GNU OpenMP (Numba's default layer on Linux) aborts a
    forked child of a process that used it: choose a fork-safe layer (TBB where installed,
    else Numba's workqueue) unless the user chose one or a layer is already running."""
    try:
        numba.threading_layer()
    except ValueError:  # not initialized yet
        if numba.config.THREADING_LAYER == "default":
            numba.config.THREADING_LAYER = "forksafe"


def kernel_matmat(points: np.ndarray, X: np.ndarray, kind: str, scale: float) -> np.ndarray:
    """K X with K_ij = f(‖p_i − p_j‖) for the kernel ``kind`` (:data:`KINDS`) and its
    ``scale`` (1/(2ℓ²) for the Gaussian, 1/ℓ for the exponential, √3/ℓ and √5/ℓ for Matérn
    3/2 and 5/2); ``points`` n × d, X n × k (float64), result n × k."""
    n, k = X.shape
    PT = np.ascontiguousarray(points.T, dtype=np.float64)
    chunks = max(1, -(-k // K_CHUNK))
    kc = -(-k // chunks)  # equal chunks, the last padded with zero columns
    X3 = np.zeros((chunks, n, kc))
    for q in range(chunks):
        part = X[:, q * kc:(q + 1) * kc]
        X3[q, :, :part.shape[1]] = part
    _forksafe_threading()
    numba.set_num_threads(_threads())
    with _one_blas_thread():
        Y3 = _tiles(PT, X3, KINDS[kind], float(scale), numba.get_num_threads())
    return np.ascontiguousarray(Y3.transpose(1, 0, 2).reshape(n, chunks * kc)[:, :k])


CHAIN_BLOCK = 128  # points between restarts of the recurrences


def chain_factors(x: np.ndarray, f: Callable[[np.ndarray], np.ndarray]) -> tuple:
    """What :func:`chain_matmat` needs of A_ij = f(|x_i − x_j|) (f(a + b) = f(a)·f(b), an
    exponential; x sorted increasingly): t_i = f(x_i − x_{i−1}), and per block [s, e] of
    ``CHAIN_BLOCK`` points cf_i = f(x_i − x_{s−1}), cb_i = f(x_{e+1} − x_i) — 3n numbers."""
    n = x.shape[0]
    B = CHAIN_BLOCK
    t = np.zeros(n)
    cf = np.zeros(n)
    cb = np.zeros(n)
    if n > 1:
        t[1:] = f(x[1:] - x[:-1])
        start = np.arange(n) // B * B
        after = np.minimum(start + B, n - 1)
        cf[B:] = f(x[B:] - x[start[B:] - 1])
        cb[:] = f(x[after] - x)
    return t, cf, cb


def chain_matmat(factors: tuple, X: np.ndarray) -> np.ndarray:
    """A X (X n × k float64) from :func:`chain_factors`: the recurrences of the module
    docstring, restarted every ``CHAIN_BLOCK`` points from the factors cf, cb evaluated
    directly, so that rounding accumulates over one block and one carry per block rather
    than over every step (n = 2²⁰ points on [0, 1] with ℓ = 0.2 — 2·10⁵ steps per length
    scale: the plain recurrences lose 1.5e-12 relative, these 5e-15)."""
    t, cf, cb = factors
    return _chain(t, cf, cb, np.ascontiguousarray(X, dtype=np.float64), CHAIN_BLOCK)


def warm_up() -> None:
    """Compile (or load from Numba's cache) every action on tiny inputs."""
    pts = np.linspace(0.0, 1.0, 3)[:, None]
    X = np.ones((3, 2))
    for kind in KINDS:
        kernel_matmat(pts, X, kind, 1.0)
    chain_matmat(chain_factors(np.arange(3.0), np.exp), X)
    exp_array(np.zeros(2))
