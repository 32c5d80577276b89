"""Any DataFrame in any table format (for ``lubench compare``)."""

from __future__ import annotations

import html

import pandas as pd

from lubench.api import LubenchError
from lubench.report.cells import fmt_number
from lubench.report.latex import tex_escape
from lubench.report.markdown import md_lines

__all__ = ["frame_text"]


def _plain(value: object) -> str:
    if isinstance(value, float):
        return fmt_number(value)
    if isinstance(value, (list, tuple)):
        return "; ".join(str(v) for v in value)
    return "" if value is None else str(value)


def frame_text(df: pd.DataFrame, fmt: str, caption: str = "") -> str:
    """``df`` as a Markdown (``md``), LaTeX booktabs (``tex``) or HTML (``html``) table:
    floats as :func:`fmt_number` writes them, lists joined by ``;``."""
    headers = [str(c) for c in df.columns]
    rows = [[_plain(v) for v in r] for r in df.itertuples(index=False)]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    if fmt == "md":
        return "\n".join(md_lines(headers, rows, numeric)) + "\n"
    if fmt in ("tex", "latex"):
        spec = "".join("r" if n else "l" for n in numeric)
        lines = [r"\begin{table}[tbp]", r"\centering"]
        if caption:
            lines.append(r"\caption{" + tex_escape(caption) + "}")
        lines += [r"\begin{tabular}{" + spec + "}", r"\toprule",
                  " & ".join(tex_escape(h) for h in headers) + r" \\", r"\midrule"]
        lines += [" & ".join(tex_escape(c) for c in r) + r" \\" for r in rows]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
        return "\n".join(lines)
    if fmt == "html":
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(
            f'<td class="{"num" if n else ""}">{html.escape(c)}</td>'
            for c, n in zip(r, numeric)) + "</tr>" for r in rows)
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n"
    raise LubenchError(f"unknown table format '{fmt}' (choose from md, tex, html)")
