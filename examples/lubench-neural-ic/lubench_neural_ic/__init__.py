"""lubench-neural-ic: a learned incomplete Cholesky preconditioner, as a lubench plugin.

Adds the method ``neural_ic`` (family ``learned``): a small message-passing network on A's
graph predicts the values of L on A's lower pattern, with a positive diagonal by
construction; it is trained once across a family's training instances (``fit``) and then
applied to unseen ones (``factorize``). The smallest honest NeuralIF-style method (Häusner,
Öktem, Sjölund, TMLR 2024).

Registering the plugin imports neither PyTorch nor PyTorch Geometric: the method imports
them when a case runs; without them the plugin is *unavailable* and says how to install
them.
"""

from __future__ import annotations

from lubench import hookimpl

from .method import NeuralIC

__all__ = ["NeuralIC", "lubench_methods", "requires", "install_hint"]

requires = ["torch", "torch_geometric", "numba"]
install_hint = "pip install torch torch-geometric"


@hookimpl
def lubench_methods() -> list[type]:
    return [NeuralIC]
