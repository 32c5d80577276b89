"""A method's colour and marker: a function of its name alone, so that a method looks the same
in every figure of every run (two runs of a paper, a report of several runs).

Colours are the Okabe–Ito palette (distinguishable with the common colour-vision
deficiencies; its yellow is darkened to read on white). The built-in methods have fixed,
distinct pairs; any other name gets a colour and a marker from a hash of the name (SHA-256,
not Python's salted ``hash``), so a plugin's method is stable too. Configurations of one
method (``gfmm_lu[P=16]``, ``gfmm_lu[P=32]``) share its colour and marker and are told apart
by line style (:func:`variant_dashes`).
"""

from __future__ import annotations

import hashlib

__all__ = ["OKABE_ITO", "MARKERS", "KNOWN", "method_color", "method_marker", "variant_dashes",
           "FAMILY_FRONT", "OTHER_FRONT"]

OKABE_ITO = {
    "blue": "#0072B2", "vermillion": "#D55E00", "bluish_green": "#009E73",
    "reddish_purple": "#CC79A7", "orange": "#E69F00", "sky_blue": "#56B4E9",
    "black": "#000000", "yellow": "#B59F00",  # #F0E442 darkened for a white background
}
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p"]

#: The built-in methods: classical in blues, green and gold, compressed in orange, learned in
#: vermillion and purple (black, for other names, is never a front's grey).
KNOWN: dict[str, tuple[str, str]] = {
    "plu": (OKABE_ITO["blue"], "s"),
    "cholesky": (OKABE_ITO["sky_blue"], "D"),
    "sparse_lu": (OKABE_ITO["bluish_green"], "^"),
    "ilu": (OKABE_ITO["yellow"], "v"),
    "gfmm_compressed": (OKABE_ITO["orange"], "P"),
    "gfmm_lu": (OKABE_ITO["vermillion"], "o"),
    "dense_masked_lu": (OKABE_ITO["reddish_purple"], "X"),
    # the preconditioner baselines (lubench_preconditioners); a learned preconditioner such
    # as the example's neural_ic hashes to vermillion "^"
    "jacobi": (OKABE_ITO["sky_blue"], "p"),
    "ic0": (OKABE_ITO["blue"], "h"),
    "ict": (OKABE_ITO["bluish_green"], ">"),
    "ilu0": (OKABE_ITO["yellow"], "*"),
    "amg": (OKABE_ITO["reddish_purple"], "d"),
}

#: Line style of the Pareto front of each family of methods (grey, drawn under the points).
FAMILY_FRONT: dict[str, tuple] = {
    "classical": (0, ()), "compressed": (0, (5, 2)), "learned": (0, (1, 1.2)),
}
OTHER_FRONT = (0, (6, 2, 1, 2))

_COLORS = list(OKABE_ITO.values())


def _digest(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")


def method_color(name: str) -> str:
    """The colour of method ``name`` (a hex string), the same in every figure."""
    if name in KNOWN:
        return KNOWN[name][0]
    return _COLORS[_digest(name) % len(_COLORS)]


def method_marker(name: str) -> str:
    """The marker of method ``name``, the same in every figure."""
    if name in KNOWN:
        return KNOWN[name][1]
    return MARKERS[(_digest(name) // len(_COLORS)) % len(MARKERS)]


_DASHES = [(0, ()), (0, (5, 2)), (0, (1, 1.5)), (0, (6, 2, 1.5, 2)), (0, (3, 1)),
           (0, (8, 2))]


def variant_dashes(labels: list[str]) -> dict[str, tuple]:
    """Line styles for the configurations of one method, in the order given (solid first)."""
    return {label: _DASHES[i % len(_DASHES)] for i, label in enumerate(labels)}
