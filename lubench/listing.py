"""``lubench list [NAME]``: the operators and methods that can be named in a suite.

Each entry: the name, its family (methods), the one-line description, the plugin that adds
it and, when that plugin lacks what it requires, the command that installs it; then its
parameters (type, default, description). ``lubench list NAME`` shows one entry with its whole
description. Docstrings are shown as plain text (:func:`lubench.console.plain_text`).
"""

from __future__ import annotations

import inspect
from typing import Any

from lubench.console import plain_text
from lubench.errors import LubenchError
from lubench.params import closest, param_specs

__all__ = ["entries", "entry", "render"]


def _show_default(value: Any) -> Any:
    if value is inspect.Parameter.empty:
        return "(required)"
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def _details(cls: type) -> str:
    """The class docstring after its first line and before its numpydoc sections."""
    lines = (inspect.getdoc(cls) or "").splitlines()[1:]
    out: list[str] = []
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if nxt.strip() and set(nxt.strip()) == {"-"} and line.strip():
            break
        out.append(line)
    return plain_text("\n".join(out).strip())


def _entry(registry: Any, kind: str, name: str, cls: type) -> dict:
    return {
        "kind": kind,
        "name": name,
        "family": getattr(cls, "family", None) if kind == "method" else None,
        "plugin": registry.provider.get((kind, name), "?"),
        "unavailable": registry.unavailable(kind, name),
        "description": plain_text(cls.describe()),
        "details": _details(cls),
        "params": [{"name": p.name, "type": p.type_name, "default": _show_default(p.default),
                    "doc": plain_text(p.doc)} for p in param_specs(cls).values()],
    }


def entries(registry: Any) -> dict[str, list[dict]]:
    """Every operator and method of ``registry``, by name, as plain data (``--json``)."""
    out: dict[str, list[dict]] = {"operators": [], "methods": []}
    for kind, table in (("operator", registry.operators), ("method", registry.methods)):
        for name in sorted(table):
            out[kind + "s"].append(_entry(registry, kind, name, table[name]))
    return out


def entry(registry: Any, name: str) -> dict:
    """The operator or method called ``name``; LubenchError (closest name suggested) else."""
    for kind, table in (("method", registry.methods), ("operator", registry.operators)):
        if name in table:
            return _entry(registry, kind, name, table[name])
    known = list(registry.methods) + list(registry.operators)
    raise LubenchError(f"no operator or method named '{name}'{closest(name, known)} "
                       f"(see `lubench list`)")


def render(e: dict, style: Any = lambda text, **_: text, details: bool = False) -> list[str]:
    """The lines of one entry; ``style`` is ``click.style`` in a terminal."""
    fam = f" [{e['family']}]" if e["family"] else ""
    lines = [f"  {style(e['name'], bold=True)}{fam}  — {e['description']}  "
             f"(plugin: {e['plugin']})"]
    if e["unavailable"]:
        lines.append("      " + style(f"unavailable: {e['unavailable']}", fg="yellow"))
    if details and e["details"]:
        lines += [f"    {line}".rstrip() for line in e["details"].splitlines()]
        lines.append("")
    if details and e["params"]:
        lines.append("    parameters:")
    for p in e["params"]:
        doc = f"  {p['doc']}" if p["doc"] else ""
        lines.append(f"      {p['name']}: {p['type']} = {p['default']}{doc}")
    return lines
