"""The second-order optimizers of training (PyTorch), beside Adam and L-BFGS.

* :mod:`.lm`         matrix-free Levenberg–Marquardt: Gauss–Newton steps with an adaptive
  damping, solved by conjugate gradients on JᵀJ products;
* :mod:`.kronecker`  its per-edge block-Jacobi preconditioner for GFMM products;
* :mod:`.newton`     Newton's step on the dense factors of LU = A, retracted onto the weights,
  with Levenberg–Marquardt as its fallback;
* :mod:`.als`        alternating least squares for GFMM products with triangular diagonal
  blocks.

:mod:`lubench_learned.training.trainer` makes them; each is imported when a run asks for it.
"""
