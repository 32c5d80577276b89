"""``lubench list [NAME]``: the operators and methods that can be named in a suite.

Each entry: the name, its family (methods), the one-line description, the plugin that adds
it and, when that plugin lacks what it requires, the command that installs it; then its
parameters (type, default, description). ``lubench list NAME`` shows one entry with its whole
description. Docstrings are shown as plain text (:func:`plain_text`).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from lubench.errors import LubenchError
from lubench.params import closest, param_specs

__all__ = ["entries", "entry", "render", "plain_text"]


# --------------------------------------------------------------------------------------------
# Docstrings as plain text
# --------------------------------------------------------------------------------------------
_ROLE_TITLE = re.compile(r":[\w:.-]+:`([^`<]*?)\s*<[^`>]*>`")
_ROLE = re.compile(r":[\w:.-]+:`~?([^`]*)`")
_LITERAL = re.compile(r"``(.+?)``")
_DEFAULT_ROLE = re.compile(r"(?<![\w`])`([^`]+)`(?![\w`])")
_STRONG = re.compile(r"(?<![\w*])\*\*(?=\S)(.+?)(?<=\S)\*\*(?![\w*])")
_EMPHASIS = re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])")


def _role_target(match: re.Match) -> str:
    target = match.group(1)
    if match.group(0).split("`")[1].startswith("~"):  # :class:`~a.b.C` shows C
        return target.rsplit(".", 1)[-1]
    return target


def plain_text(text: str) -> str:
    """``text`` without reStructuredText markup: ``literal`` → literal, :class:`~a.B` → B,
    :func:`title <target>` → title, *emphasis* and **strong** → their words, a trailing
    ``::`` → ``:``. Math written in Unicode (‖A − LU‖, x*) is left alone."""
    out = _ROLE_TITLE.sub(lambda m: m.group(1), text)
    out = _ROLE.sub(_role_target, out)
    out = _LITERAL.sub(lambda m: m.group(1), out)
    out = _DEFAULT_ROLE.sub(lambda m: m.group(1), out)
    out = _STRONG.sub(lambda m: m.group(1), out)
    out = _EMPHASIS.sub(lambda m: m.group(1), out)
    out = re.sub(r"(\S)::(\s*)$", r"\1:\2", out, flags=re.M)
    out = re.sub(r"(\s)::(\s*)$", r"\2", out, flags=re.M)
    return out


# --------------------------------------------------------------------------------------------
# The entries
# --------------------------------------------------------------------------------------------
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
