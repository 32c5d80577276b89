"""The plugin manager: every way in, every way a plugin can break, and what the rest does then.

Plugins are written into tmp_path; entry points are faked by replacing
``importlib.metadata.entry_points`` (installed packages are in test_third_party.py).
"""

from __future__ import annotations

import importlib.metadata
import pickle
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import TOY_PLUGIN

from lubench import hookimpl
from lubench.api import LubenchError, Method
from lubench.errors import PluginError
from lubench.registry import Registry, load_registry

GOOD = '''
    """A plugin with one method."""
    import numpy as np
    from lubench import hookimpl
    from lubench.api import Factorization, Method

    class Fact(Factorization):
        def __init__(self, A):
            super().__init__()
            self.A, self.n_params = A, A.size

        def solve(self, B):
            return np.linalg.solve(self.A, B)

        def apply(self, X):
            return self.A @ X

    class {cls}(Method):
        """Dense solve, for the plugin tests."""
        name = "{name}"
        family = "classical"

        def factorize(self, op, ctx):
            return Fact(op.dense().copy())

    @hookimpl
    def lubench_methods():
        return [{cls}]
'''


def write(folder: Path, filename: str, body: str) -> Path:
    path = folder / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return path


def good(folder: Path, filename: str = "good.py", name: str = "good_lu",
         cls: str = "GoodLU") -> Path:
    return write(folder, filename, GOOD.format(name=name, cls=cls))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("LUBENCH_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("LUBENCH_DISABLE_PLUGINS", raising=False)


def fake_entry_points(monkeypatch, *pairs: tuple[str, str]) -> None:
    """Make the `lubench` group hold exactly these (name, module) entry points."""
    eps = importlib.metadata.EntryPoints(
        importlib.metadata.EntryPoint(name, value, "lubench") for name, value in pairs)

    def entry_points(**kw):
        return eps if kw.get("group") == "lubench" else importlib.metadata.EntryPoints([])

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


# --------------------------------------------------------------------------------------------
# The three ways in
# --------------------------------------------------------------------------------------------
def test_file_plugin(tmp_path):
    path = good(tmp_path)
    reg = load_registry([str(path)], entry_points=False)
    info = reg.plugins["good"]
    assert (info.status, info.kind, info.methods) == ("ok", "file", ["good_lu"])
    assert info.origin == f"file {path}"
    assert reg.provider[("method", "good_lu")] == "good"
    assert reg.pm.get_plugin("good") is not None  # registered with pluggy like any plugin
    # a class from a file plugin pickles (worker processes): its module stays importable
    method = reg.method("good_lu")()
    assert type(pickle.loads(pickle.dumps(method))) is reg.method("good_lu")


def test_file_plugin_relative_to_base_dir(tmp_path):
    good(tmp_path / "suite_dir" / "plugins")
    reg = load_registry(["plugins/good.py"], base_dir=tmp_path / "suite_dir",
                        entry_points=False)
    assert reg.plugins["good"].target == str(tmp_path / "suite_dir" / "plugins" / "good.py")


def test_module_plugin(tmp_path, monkeypatch):
    good(tmp_path / "my_pkg", "my_mod.py")
    (tmp_path / "my_pkg" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = load_registry(["my_pkg.my_mod"], entry_points=False)
    info = reg.plugins["my_pkg.my_mod"]
    assert (info.status, info.kind, info.methods) == ("ok", "module", ["good_lu"])
    assert info.origin.startswith("module my_pkg.my_mod (") and "my_mod.py" in info.origin


def test_module_found_in_base_dir(tmp_path, monkeypatch):
    """`--plugin my_mod` from the console script finds my_mod.py in the working directory."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # undo the insertion afterwards
    good(tmp_path, "lonely_mod_xyz.py")
    with pytest.raises(PluginError, match="plugin module not found: 'lonely_mod_xyz'"):
        load_registry(["lonely_mod_xyz"], entry_points=False)
    reg = load_registry(["lonely_mod_xyz"], base_dir=tmp_path, entry_points=False)
    assert reg.plugins["lonely_mod_xyz"].methods == ["good_lu"]
    monkeypatch.delitem(sys.modules, "lonely_mod_xyz")


def test_loading_a_module_from_base_dir_leaves_sys_path_alone(tmp_path, monkeypatch):
    """The folder is on sys.path only while the plugin is imported (no side effect)."""
    before = list(sys.path)
    good(tmp_path, "lonely_mod_path_xyz.py")
    reg = load_registry(["lonely_mod_path_xyz"], base_dir=tmp_path, entry_points=False)
    assert reg.plugins["lonely_mod_path_xyz"].methods == ["good_lu"]
    assert sys.path == before
    monkeypatch.delitem(sys.modules, "lonely_mod_path_xyz")


def test_suite_plugins_list(tmp_path):
    """A suite's `plugins:` names files relative to the suite file (and modules)."""
    from lubench.suite.load import load_suite, suite_plugins

    suite_dir = tmp_path / "suites"
    good(suite_dir / "extra")
    suite = suite_dir / "s.yaml"
    suite.write_text(f"name: s\nplugins: [extra/good.py, {TOY_PLUGIN}]\n"
                     "operators: [{name: toy_tridiag, sizes: [8]}]\n"
                     "methods: [good_lu, toy_lu]\n")
    reg = load_registry(suite_plugins(suite), base_dir=suite.parent, entry_points=False)
    assert reg.plugins["good"].status == reg.plugins["toy_plugin"].status == "ok"
    cases = load_suite(suite, reg).cases
    assert sorted(c.method for c in cases) == ["good_lu", "toy_lu"]


@pytest.mark.parametrize("entry, shown", [('"a\\0b.py"', "'a\\x00b.py'"), ('""', "''"),
                                          ('"mod\\nother"', "'mod\\nother'")])
def test_a_plugins_entry_that_names_nothing_is_the_suites_error(tmp_path, entry, shown):
    """A NUL byte in a `plugins:` entry was a ValueError traceback (resolving its path)."""
    from lubench.errors import SuiteError
    from lubench.suite.load import plugin_specs

    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\nplugins: [{entry}]\n")
    with pytest.raises(SuiteError) as info:
        plugin_specs(suite)
    assert str(info.value) == (f"{suite}: plugins[0]: expected a module name or a .py path, "
                               f"got {shown}")


def test_entry_points_load_one_by_one(tmp_path, monkeypatch):
    """pluggy's own loader stops at the first failure; ours records it and goes on."""
    good(tmp_path, "ep_good_mod.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_entry_points(monkeypatch, ("aaa_missing", "no_such_module_for_lubench"),
                      ("zzz_good", "ep_good_mod"))
    reg = load_registry()
    assert reg.plugins["aaa_missing"].status == (
        "broken: ModuleNotFoundError: No module named 'no_such_module_for_lubench'")
    assert reg.plugins["aaa_missing"].kind == "entry point"
    assert reg.plugins["zzz_good"].status == "ok"
    assert "good_lu" in reg.methods
    assert [p.name for p in reg.broken()] == ["aaa_missing"]
    # the same module reached again through --plugin is loaded once, under its first name
    assert reg.load_spec("ep_good_mod") == "zzz_good"
    assert "ep_good_mod" not in reg.plugins


def test_same_file_twice_is_loaded_once(tmp_path):
    path = good(tmp_path)
    reg = load_registry([str(path), str(path)], entry_points=False)
    assert list(reg.plugins) == ["good"]
    cls = reg.method("good_lu")
    assert reg.load_spec("good.py", base_dir=tmp_path) == "good"
    assert reg.method("good_lu") is cls


def test_in_memory_plugin(toy_registry):
    """Any object with @hookimpl methods registers (lubench.testing uses this)."""
    toy = toy_registry.method("toy_lu")

    class Plug:
        @hookimpl
        def lubench_methods(self):
            return [toy]

    reg = Registry()
    info = reg.register(Plug(), "mem", origin="test object")
    assert (info.status, info.kind, info.methods) == ("ok", "object", ["toy_lu"])
    assert reg.method("toy_lu") is toy


# --------------------------------------------------------------------------------------------
# Broken plugins: reported in one line, the others keep working
# --------------------------------------------------------------------------------------------
BROKEN = {
    "import_error": ("import not_a_module_for_lubench_tests\n",
                     "broken: ModuleNotFoundError: No module named "
                     "'not_a_module_for_lubench_tests'"),
    "syntax_error": ("def (:\n", "broken: SyntaxError: invalid syntax"),
    "exits": ("import sys\nsys.exit('no GPU here')\n", "broken: SystemExit: no GPU here"),
    "hook_raises": ("from lubench import hookimpl\n"
                    "@hookimpl\ndef lubench_methods():\n    raise RuntimeError('boom\\nmore')\n",
                    "broken: RuntimeError: boom"),
    "not_a_list": ("from lubench import hookimpl\n"
                   "@hookimpl\ndef lubench_methods():\n    return 42\n",
                   "broken: TypeError: lubench_methods() returned int 42; expected a list of "
                   "classes"),
    "not_a_method": ("from lubench import hookimpl\n"
                     "@hookimpl\ndef lubench_methods():\n    return [dict]\n",
                     "broken: TypeError: lubench_methods() returned <class 'dict'>, which is "
                     "not a subclass of lubench.api.Method"),
    "bad_family": ("from lubench import hookimpl\nfrom lubench.api import Method\n"
                   "class M(Method):\n    name = 'm'\n    family = 'magic'\n"
                   "@hookimpl\ndef lubench_methods():\n    return [M]\n",
                   "broken: TypeError: method 'm' has family 'magic'; expected one of "
                   "classical, learned, compressed"),
    "no_name": ("from lubench import hookimpl\nfrom lubench.api import Method\n"
                "class M(Method):\n    pass\n"
                "@hookimpl\ndef lubench_methods():\n    return [M]\n",
                "broken: TypeError: lubench_methods() returned M, which sets no 'name'"),
    "misspelled": ("from lubench import hookimpl\n"
                   "@hookimpl\ndef lubench_method():\n    return []\n",
                   "broken: unknown hook lubench_method(); did you mean 'lubench_methods'? "
                   "(the hooks are lubench_operators, lubench_methods)"),
    "misspelled_unmarked": ("def lubench_method():\n    return []\n",
                            "broken: function lubench_method() is not a lubench hook; did you "
                            "mean lubench_methods()?"),
    "unmarked": ("def lubench_methods():\n    return []\n",
                 "broken: function lubench_methods() is not marked as a hook: decorate it with "
                 "@lubench.hookimpl"),
    "no_hooks": ("X = 1\n",
                 "broken: implements no lubench hook (lubench_operators(), lubench_methods())"),
    "bad_hook_args": ("from lubench import hookimpl\n"
                      "@hookimpl\ndef lubench_methods(config):\n    return []\n",
                      "broken: PluginValidationError: Plugin 'bad_hook_args' for hook "
                      "'lubench_methods'"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_plugin_is_reported_and_the_rest_works(case, tmp_path):
    body, status = BROKEN[case]
    bad = write(tmp_path, f"{case}.py", body)
    reg = load_registry([str(bad), str(good(tmp_path))], entry_points=False)
    info = reg.plugins[case]
    assert info.status.startswith(status), info.status
    assert "\n" not in info.status
    assert reg.broken() == [info] and (info.operators, info.methods) == ([], [])
    assert reg.pm.get_plugin(case) is None  # nothing of it stays registered with pluggy
    # the rest keeps working: the good plugin loaded after it (check_pending is not tripped
    # by the broken one) and its method factorizes
    assert reg.plugins["good"].status == "ok"
    assert "good_lu" in reg.methods


def test_unknown_name_mentions_broken_plugins(tmp_path):
    bad = write(tmp_path, "oops.py", "raise ImportError('needs torch_sparse')\n")
    reg = load_registry([str(bad), str(good(tmp_path))], entry_points=False)
    with pytest.raises(LubenchError, match=r"unknown method 'good_l'; did you mean 'good_lu'\?"
                                           r"; broken plugins: oops"):
        reg.method("good_l")


def test_strict_makes_a_broken_plugin_an_error(tmp_path, monkeypatch):
    bad = write(tmp_path, "oops.py", "raise ImportError('needs torch_sparse')\n")
    monkeypatch.setenv("LUBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"plugin 'oops' \(file .*oops.py\) is broken: "
                                          r"ImportError: needs torch_sparse") as info:
        load_registry([str(bad)], entry_points=False)
    assert info.value.plugin == "oops"
    assert isinstance(info.value, LubenchError)  # the CLI prints it on one line, exit 2


def test_disable_skips_by_name(tmp_path, monkeypatch):
    good(tmp_path / "other", "second.py", name="second_lu", cls="SecondLU")
    bad = write(tmp_path, "oops.py", "raise ImportError('needs torch_sparse')\n")
    monkeypatch.setenv("LUBENCH_DISABLE_PLUGINS", "oops, ep_b")
    monkeypatch.setenv("LUBENCH_STRICT_PLUGINS", "1")  # a disabled plugin is not even imported
    good(tmp_path, "ep_mod_b.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_entry_points(monkeypatch, ("ep_b", "ep_mod_b"))
    reg = load_registry([str(bad), str(tmp_path / "other" / "second.py")])
    assert reg.plugins["oops"].status == reg.plugins["ep_b"].status == \
        "disabled (LUBENCH_DISABLE_PLUGINS)"
    assert reg.broken() == []
    assert sorted(reg.methods) == ["second_lu"]
    assert "ep_mod_b" not in sys.modules


# --------------------------------------------------------------------------------------------
# What is an error whatever the settings: clashes and typos
# --------------------------------------------------------------------------------------------
def test_duplicate_method_name_names_both_providers(tmp_path):
    first = good(tmp_path, "first.py")
    second = good(tmp_path, "second.py", cls="OtherLU")  # same method name "good_lu"
    with pytest.raises(PluginError) as info:
        load_registry([str(first), str(second)], entry_points=False)
    msg = str(info.value)
    assert f"method name 'good_lu' is provided twice: by plugin 'first' (file {first}) and " \
           f"by plugin 'second' (file {second})" in msg
    assert "LUBENCH_DISABLE_PLUGINS=second" in msg
    assert info.value.plugin == "second"


def test_duplicate_within_one_plugin(tmp_path):
    body = textwrap.dedent(GOOD.format(name="twice", cls="A")).replace(
        "return [A]", "return [A, B]") + "\nclass B(A):\n    pass\n"
    path = write(tmp_path, "twice.py", body)
    with pytest.raises(PluginError, match="plugin 'twice' .* adds two methods named 'twice': "
                                          "A and B"):
        load_registry([str(path)], entry_points=False)


def test_duplicate_plugin_name_names_both_origins(tmp_path):
    a = good(tmp_path / "a", "same.py")
    b = good(tmp_path / "b", "same.py", name="other_lu")
    with pytest.raises(PluginError, match=f"two plugins are named 'same': file {a} and file {b}"):
        load_registry([str(a), str(b)], entry_points=False)


def test_typos_are_errors_not_broken_plugins(tmp_path):
    with pytest.raises(PluginError, match="plugin file not found: .*nope.py"):
        load_registry(["nope.py"], base_dir=tmp_path, entry_points=False)
    with pytest.raises(PluginError, match="plugin module not found: 'no_such_pkg_xyz.mod'"):
        load_registry(["no_such_pkg_xyz.mod"], entry_points=False)
    with pytest.raises(PluginError, match="is neither a module path"):
        load_registry(["my plugin"], entry_points=False)


def test_builtins_register_like_third_parties():
    """The built-ins arrive through the same entry-point group and the same register()."""
    reg = load_registry()
    eps = {ep.name for ep in importlib.metadata.entry_points(group="lubench")}
    assert {"operators", "classical", "learned"} <= eps <= set(reg.plugins)
    for name in ("operators", "classical"):
        info = reg.plugins[name]
        assert info.kind == "entry point" and info.distribution == "lubench"
        assert reg.pm.get_plugin(name) is not None
    assert all(issubclass(cls, Method) for cls in reg.methods.values())


def test_the_guides_plugin_is_complete_and_keeps_the_contract(tmp_path):
    """docs/plugins.md's first example: under 40 lines, loads as a file, passes every check."""
    from lubench.testing import check_method

    text = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.splitlines()) < 40
    path = write(tmp_path, "my_lu.py", code)
    reg = load_registry([str(path)], entry_points=False)
    assert (reg.plugins["my_lu"].status, reg.plugins["my_lu"].methods) == ("ok", ["my_lu"])
    results = check_method(reg.method("my_lu"))
    assert [r.status for r in results] == ["pass"] * len(results)
