"""A method for the live SLURM tests that notes every start of a case.

``probe_lu`` appends ``<tag> <SLURM_JOB_ID>`` to the file named by ``LUBENCH_PROBE_STARTS``
(sbatch passes the environment on) when a case starts, sleeps ``seconds``, then factors
densely. Counting the lines of a tag says how many times its case ran.
"""

import os
import time

import numpy as np
import scipy.linalg as sla

from lubench import hookimpl
from lubench.api import Factorization, Method, Operator, RunContext


class _LU(Factorization):
    def __init__(self, A):
        super().__init__()
        self.A, self.lu_piv, self.n_params = A, sla.lu_factor(A), A.size

    def solve(self, B):
        return sla.lu_solve(self.lu_piv, B)

    def apply(self, X):
        return self.A @ X


class ProbeLU(Method):
    """Dense LU that records its start, for the SLURM tests.

    Parameters
    ----------
    tag : str
        What the start line says.
    seconds : float
        How long to sleep before factoring.
    """

    name = "probe_lu"
    family = "classical"

    def __init__(self, tag: str = "", seconds: float = 0.0):
        self.tag = tag
        self.seconds = seconds

    def factorize(self, op: Operator, ctx: RunContext) -> Factorization:
        path = os.environ.get("LUBENCH_PROBE_STARTS")
        if path:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{self.tag} {os.environ.get('SLURM_JOB_ID', '-')}\n".encode())
            finally:
                os.close(fd)
        time.sleep(self.seconds)
        return _LU(np.asarray(op.dense(), dtype=float))


@hookimpl
def lubench_methods():
    return [ProbeLU]
