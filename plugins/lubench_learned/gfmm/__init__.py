"""Block-triangular factors as GFMM blocks, their transposes, and block substitution.

A GFMM block (after the "Learn LU" post) applies an n×n matrix, n = M·P, through a binary
tree with M leaves of P unknowns each and K = log₂M levels. Level i = 0 … K (i = 0 the
leaves, i = K the root) has M/2^i nodes, each carrying a P-vector. With x_a the a-th leaf
block of the input and every learned piece a dense P×P map:

* up-sweep:   v⁰ = x,  vⁱ⁺¹_p = E^i_{2p} vⁱ_{2p} + E^i_{2p+1} vⁱ_{2p+1}   (encoder edges);
* bridges:    the leaf bridge acts on x (diagonal blocks D_a and one off-diagonal band),
  the interior bridge of level i on vⁱ (one off-diagonal band), the root bridge is zero;
* down-sweep: yⁱ_a = (bridge term)_a + F^i_a yⁱ⁺¹_{⌊a/2⌋}   (decoder edges),  y = y⁰.

For L (``lower``) the bands connect node a−1 → a; for U (upper) node a+1 → a. Output block
a then depends on input block b ≤ a (resp. ≥ a) only.

**The diagonal blocks** (``diag``):

* ``full`` (the post): D_a is a free P×P block, so (L·D, D⁻¹·U) fits equally well for any
  invertible block-diagonal D — M·P² redundant numbers per product and a drifting gauge;
  nothing keeps D_a invertible.
* ``triangular`` (no gauge, invertible by construction): L's D_a = I + strict_lower(Θ_a)
  (unit lower triangular), U's D_a = strict_upper(Θ_a) + diag(s ⊙ (δ + softplus θ_a)) with
  θ_a = diag(Θ_a), a fixed sign s ∈ {±1}^P and a floor δ ≥ 0: |U_ii| ≥ δ whatever the
  weights. Then det L = 1 and det U ≠ 0, and L·U is the unique unit-lower LU of its product.

Numbers of one factor (root bridge frozen at zero; ``factor_params``)::

    full:        P²·[(2M−2) enc + (2M−2) dec + (2M−1) leaf bridge + (M−1−K) interior]
                   = P²(7M − 6 − log₂M)
    triangular:  the same with each diagonal block's P² replaced by P(P−1)/2 (L) or
                   P(P+1)/2 (U): M·P² fewer for the pair L, U.

Of those, 4K edges never reach the output (the root's encoders and decoders, and the two
encoder edges under each level's last node — resp. the decoder edges under its first node —
whose values only meet the zero root bridge), so 4K·P² fewer are live (``live_params``).
The tensors hold P² per diagonal block whatever the parametrization (the masked-out half of
a triangular block's Θ has zero gradient).

Aᵀ runs the same graph with every edge transposed and encoder and decoder swapped; a lower
factor's transpose is an upper graph. Each level's edges are one (nodes, P, P) tensor
applied by one ``torch.bmm``; the two sibling edges of a parent are stored side by side, so
that the sum into the parent (and the split out of it) is the same single product.

Once trained, a factor leaves as :class:`~lubench_structured.gfmm.arrays.GFMMArrays`
(:meth:`GFMMFactor.arrays`: the same layout, diagonal blocks as used, float64), the one
structure both ``gfmm_lu`` and ``gfmm_compressed`` apply and solve with — block substitution
through the graph, O(n·P) per right-hand side, also transposed.

Modules, lowest first:

* :mod:`.sweeps`          the graph on leaf blocks: plain autograd, and fused (a hand-written
  backward into level buffers);
* :mod:`.identity_sweep`  the factor applied to the identity, I's zero blocks never multiplied;
* :mod:`.step_plan`       the full-batch step ‖LU − A‖²_F and its gradient, recorded once as a
  list of kernel calls;
* :mod:`.substitution`    differentiable block substitution through a block-lower graph;
* :mod:`.model`           the ``nn.Module`` s :class:`GFMMFactor` and :class:`GFMMProduct`,
  their parameter counts, :func:`solve_factor`.

PyTorch throughout: imported when a case runs, never when the plugin registers.
"""

from __future__ import annotations

from .model import (
    GFMMFactor,
    GFMMProduct,
    dense_factor,
    factor_params,
    live_params,
    solve_factor,
)

__all__ = ["GFMMFactor", "GFMMProduct", "factor_params", "live_params", "dense_factor",
           "solve_factor"]
