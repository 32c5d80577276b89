"""What can be named in a suite and how to write one: ``lubench list``, ``lubench plugins``,
``lubench check-plugin`` (through :mod:`lubench.registry.manager`, :mod:`lubench.cli.listing`,
:mod:`lubench.testing`) and ``lubench schema`` (:mod:`lubench.suite.schema`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from lubench.cli.common import CONTEXT_SETTINGS, load_plugins, plugin_option, user_errors
from lubench.cli.listing import entries, entry, render
from lubench.registry import load_registry


def _complete_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """Shell completion of operator and method names (the installed plugins)."""
    reg = load_registry()
    return sorted(n for n in [*reg.methods, *reg.operators] if n.startswith(incomplete))


@click.command("list", context_settings=CONTEXT_SETTINGS)
@click.argument("name", required=False, shell_complete=_complete_names)
@plugin_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@user_errors
def list_(name: str | None, plugin_specs: tuple[str, ...], as_json: bool) -> None:
    """Operators and methods: parameters, defaults, descriptions and providing plugin.

    With NAME, one operator or method and its whole description.
    """
    reg = load_plugins(plugin_specs, Path.cwd())
    if name is not None:
        one = entry(reg, name)
        if as_json:
            click.echo(json.dumps(one, indent=2, default=str))
            return
        for line in render(one, click.style, details=True):
            click.echo(line)
        return
    table = entries(reg)
    if as_json:
        click.echo(json.dumps(table, indent=2, default=str))
        return
    for title, key in (("Operators", "operators"), ("Methods", "methods")):
        click.secho(f"{title}:", bold=True)
        for e in table[key]:
            for line in render(e, click.style):
                click.echo(line)
        click.echo()


@click.command(context_settings=CONTEXT_SETTINGS)
@plugin_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@user_errors
def plugins(plugin_specs: tuple[str, ...], as_json: bool) -> None:
    """Every plugin: where it comes from, what it adds, and whether it loaded."""
    reg = load_registry(list(plugin_specs), Path.cwd())
    rows = [p.as_dict() for p in reg.plugins.values()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for p in rows:
        color = "green" if p["status"] == "ok" else "red" if p["status"].startswith("broken") \
            else "yellow"
        click.echo(f"{click.style(p['name'], bold=True)}: {click.style(p['status'], fg=color)}")
        click.echo(f"    from: {p['origin']}")
        for kind in ("operators", "methods"):
            if p[kind]:
                click.echo(f"    {kind}: {', '.join(p[kind])}")
    counts = [f"{n} {what}" for what, n in (
        ("unavailable", sum(p["status"].startswith("unavailable") for p in rows)),
        ("broken", sum(p["status"].startswith("broken") for p in rows))) if n]
    click.echo(", ".join([f"{len(rows)} plugins", *counts]))


@click.command("check-plugin", context_settings=CONTEXT_SETTINGS)
@click.argument("names", nargs=-1, required=True)
@plugin_option
@user_errors
def check_plugin(names: tuple[str, ...], plugin_specs: tuple[str, ...]) -> None:
    """Run the contract checks on methods or operators (by name) or on every name a plugin adds."""
    from lubench.testing import run_checks  # runs cases (SciPy, pandas): not for `lubench list`

    reg = load_plugins(plugin_specs, Path.cwd())
    failures = run_checks(reg, names, echo=click.echo)
    if failures:
        sys.exit(1)


@click.command(context_settings=CONTEXT_SETTINGS)
@user_errors
def schema() -> None:
    """The suite format as JSON Schema, for editors that check and complete YAML.

    \b
    lubench schema > lubench-suite.schema.json
    then, with the YAML language server (VS Code, Neovim, ...), as the first line of a suite:
      # yaml-language-server: $schema=./lubench-suite.schema.json
    """
    from lubench.suite.schema import json_schema  # pydantic: only `lubench schema` needs it

    click.echo(json.dumps(json_schema(), indent=2))
