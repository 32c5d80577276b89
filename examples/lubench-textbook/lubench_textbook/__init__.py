"""lubench-textbook: an example third-party lubench plugin.

Adds one method, ``textbook_lu``: Gaussian elimination written as a sum of outer products
("column into rows"), without pivoting (:class:`~lubench_textbook.outer_lu.TextbookLU`).
"""

from __future__ import annotations

from lubench import hookimpl
from lubench_textbook.outer_lu import OuterProductLU, TextbookLU

__all__ = ["OuterProductLU", "TextbookLU", "lubench_methods"]
__version__ = "0.1.0"


@hookimpl
def lubench_methods() -> list[type]:
    """The methods this plugin adds."""
    return [TextbookLU]
