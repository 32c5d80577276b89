"""Parameters read from signatures and numpydoc, and suite values coerced to them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from lubench.api import InvalidParameter, Method
from lubench.params import closest, coerce, param_specs, validate_params


class Documented(Method):
    """A method with every kind of parameter.

    Parameters
    ----------
    P : int
        Leaf size.
    lr : float
        Learning rate,
        on two lines.
    betas : tuple of float
        Adam betas.
    loss : {"identity", "probes"}
        Which loss.
    path : Path or None
        A file.
    """

    name = "documented"

    def __init__(self, P: int = 16, lr: float = 1e-2, betas: tuple[float, float] = (0.9, 0.99),
                 loss: Literal["identity", "probes"] = "identity", path: Path | None = None):
        self.P, self.lr, self.betas, self.loss, self.path = P, lr, betas, loss, path


def test_specs_come_from_signature_and_numpydoc():
    specs = param_specs(Documented)
    assert list(specs) == ["P", "lr", "betas", "loss", "path"]
    assert specs["P"].default == 16 and specs["P"].type_name == "int"
    assert specs["lr"].doc == "Learning rate, on two lines."
    assert specs["loss"].type_name == "identity|probes"
    assert Documented.describe() == "A method with every kind of parameter."


def test_yaml_values_are_coerced():
    out = validate_params(Documented, {"P": 32.0, "lr": "1e-3", "betas": [0.5, 0.6],
                                       "loss": "probes", "path": "m.mtx"}, "s.yaml",
                          base_dir=Path("/data"))
    assert out == {"P": 32, "lr": 1e-3, "betas": (0.5, 0.6), "loss": "probes",
                   "path": Path("/data/m.mtx")}
    assert coerce(None, int | None) is None


@pytest.mark.parametrize("params, message", [
    ({"lrr": 1}, "takes no parameter 'lrr'; did you mean 'lr'?"),
    ({"P": "big"}, "s.yaml.P: expected an integer, got 'big'"),
    ({"P": True}, "expected an integer"),
    ({"loss": "l2"}, "expected one of 'identity', 'probes', got 'l2'"),
    ({"betas": [0.1]}, "expected 2 values"),
])
def test_bad_values_name_the_parameter(params, message):
    with pytest.raises(InvalidParameter, match=None) as info:
        validate_params(Documented, params, "s.yaml")
    assert message in str(info.value)


def test_closest_suggests_only_near_names():
    hint = closest("laplacian1d", ["laplacian_1d", "rbf_kernel"])
    assert hint == "; did you mean 'laplacian_1d'?"
    assert closest("zzz", ["laplacian_1d"]) == ""
