"""A third party's view: pip-install the example plugin package, list it, check it, run it.

The example package (examples/lubench-textbook) is installed once per session with pip from
a copy of its folder into a target directory put on sys.path / PYTHONPATH: a real install
(wheel built, entry point written to its dist-info), that neither touches the environment the
tests run in nor leaves anything behind for the next session or a CI venv.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, TOY_PLUGIN

from lubench.execution.plan import RunPlan
from lubench.execution.worker import run_case
from lubench.registry import load_registry
from lubench.suite.load import build_suite

EXAMPLE = REPO / "examples" / "lubench-textbook"

BROKEN_PLUGIN = "import not_a_module_for_lubench_tests\n"
BAD_METHOD = '''
    """A method plugin that breaks three rules."""
    import numpy as np
    from lubench import hookimpl
    from lubench.api import Factorization, Method

    class Fact(Factorization):
        def __init__(self, A):
            super().__init__()
            self.A = A
            self.n_params = 0                 # rule: n_params is a positive integer
            self.log = lambda msg: None       # rule: the factorization pickles

        def solve(self, B):
            return np.linalg.solve(self.A, B)

        def apply(self, X):
            return self.A @ X

    class BadLU(Method):
        """Dense solve that breaks the contract."""
        name = "bad_lu"
        family = "classical"

        def __init__(self, tol=1e-3):         # rule: annotated and documented parameters
            self.tol = tol

        def factorize(self, op, ctx):
            return Fact(op.dense().copy())

    @hookimpl
    def lubench_methods():
        return [BadLU]
'''
GOOD_METHOD = '''
    """A good method plugin: dense LU with partial pivoting."""
    import scipy.linalg as sla
    from lubench import hookimpl
    from lubench.api import Factorization, Method

    class Fact(Factorization):
        def __init__(self, A):
            super().__init__()
            self.lu, self.piv = sla.lu_factor(A)
            self.A, self.n_params = A, A.size

        def solve(self, B):
            return sla.lu_solve((self.lu, self.piv), B)

        def apply(self, X):
            return self.A @ X

    class {cls}(Method):
        """Dense LU with partial pivoting (LAPACK getrf)."""
        name = "{name}"
        family = "classical"

        def factorize(self, op, ctx):
            return Fact(op.dense().copy())

    @hookimpl
    def lubench_methods():
        return [{cls}]
'''


def _builds_offline() -> bool:
    """pip can build the example with what is installed (setuptools with bdist_wheel)."""
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return False
    major, minor = (int(x) for x in version.split(".")[:2])
    if (major, minor) >= (70, 1):
        return True
    try:
        importlib.metadata.version("wheel")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="session")
def textbook_site(tmp_path_factory) -> Path:
    """The example package, pip-installed from (a copy of) its folder into a target dir."""
    src = tmp_path_factory.mktemp("textbook-src") / "lubench-textbook"
    # a copy: the in-tree build writes build/ and *.egg-info next to the sources
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    site = tmp_path_factory.mktemp("textbook-site")
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input",
           "--disable-pip-version-check", "--quiet", "--target", str(site)]
    if _builds_offline():
        cmd.append("--no-build-isolation")  # else pip fetches setuptools (CI has a network)
    proc = subprocess.run([*cmd, str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"
    assert (site / "lubench_textbook" / "outer_lu.py").is_file()
    return site


@pytest.fixture
def textbook(textbook_site, monkeypatch):
    """The installed example visible to this process (entry points scan sys.path)."""
    monkeypatch.syspath_prepend(str(textbook_site))
    monkeypatch.delenv("LUBENCH_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("LUBENCH_DISABLE_PLUGINS", raising=False)
    yield textbook_site
    for name in [m for m in sys.modules if m.split(".")[0] == "lubench_textbook"]:
        del sys.modules[name]


def lubench_exe() -> str:
    here = Path(sys.executable).parent / "lubench"
    found = str(here) if here.exists() else shutil.which("lubench")
    assert found, "the lubench console script is not installed"
    return found


def lubench(*args: str, site: Path | None = None, cwd: Path | None = None,
            env: dict[str, str] | None = None,
            pythonpath: list[Path] = ()) -> subprocess.CompletedProcess:
    """Run the installed console script, as a user would."""
    full = {k: v for k, v in os.environ.items()
            if k not in ("LUBENCH_STRICT_PLUGINS", "LUBENCH_DISABLE_PLUGINS", "PYTHONPATH")}
    paths = [str(p) for p in ([site] if site else []) + list(pythonpath)]
    if paths:
        full["PYTHONPATH"] = os.pathsep.join(paths)
    full.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                 # the learned built-ins import PyTorch (2 s a process); nothing here needs them
                 "LUBENCH_DISABLE_PLUGINS": "learned"})
    full.update(env or {})
    return subprocess.run([lubench_exe(), *args], capture_output=True, text=True,
                          cwd=cwd, env=full, timeout=300)


def write(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return path


def blocks(output: str) -> dict[str, list[str]]:
    """check-plugin's output: target header → its PASS/FAIL/SKIP lines."""
    out: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        if line.startswith("  "):
            out[current].append(line.strip())
        elif " (plugin " in line:
            current = line.split(" (plugin ")[0]
            out[current] = []
    return out


# --------------------------------------------------------------------------------------------
# The installed package
# --------------------------------------------------------------------------------------------
def test_installed_plugin_is_listed(textbook_site):
    proc = lubench("plugins", "--json", site=textbook_site)
    assert proc.returncode == 0, proc.stderr
    rows = {p["name"]: p for p in json.loads(proc.stdout)}
    tb = rows["textbook"]
    assert tb["status"] == "ok"
    assert (tb["kind"], tb["distribution"], tb["version"]) == ("entry point",
                                                              "lubench-textbook", "0.1.0")
    assert tb["origin"] == "lubench-textbook 0.1.0, entry point textbook = lubench_textbook"
    assert (tb["operators"], tb["methods"]) == ([], ["textbook_lu"])
    assert rows["classical"]["distribution"] == "lubench"  # the built-ins, listed alike

    text = lubench("plugins", site=textbook_site).stdout.splitlines()
    i = text.index("textbook: ok")
    assert text[i + 1:i + 3] == [
        "    from: lubench-textbook 0.1.0, entry point textbook = lubench_textbook",
        "    methods: textbook_lu"]


def test_suite_with_the_installed_plugin(textbook):
    """Diagonally dominant: exact. A zero leading minor: failed, with the zero pivot named."""
    reg = load_registry([str(TOY_PLUGIN)])
    assert reg.provider[("method", "textbook_lu")] == "textbook"
    suite = build_suite({
        "name": "textbook",
        "operators": [{"name": "toy_tridiag", "sizes": [31], "params": {"d": [4.0, 1.0]}}],
        "methods": ["textbook_lu", "toy_lu"],
    }, reg)
    plan = RunPlan(registry=reg)
    recs = {(c.operator_params["d"], c.method): run_case(c, plan=plan) for c in suite.cases}

    ok = recs[(4.0, "textbook_lu")]
    assert (ok["status"], ok["error"]) == ("ok", "")
    # exact up to round-off: n·ε with no growth on a diagonally dominant matrix
    assert ok["factor_error"] < 31 * 2.3e-16 and ok["solve_residual"] < 31 * 2.3e-16
    assert ok["precond_iterations"] == 1 and ok["n_params"] == 31 * 31

    # tridiag(−1, 1, −1): u₀₀ = 1, ℓ₁₀ = −1, u₁₁ = 1 − (−1)(−1) = 0 exactly
    bad = recs[(1.0, "textbook_lu")]
    assert bad["status"] == "failed"
    assert bad["error"].startswith("zero pivot at step 1 (|u_kk| = 0, column max 1)")
    assert bad["factor_error"] is None
    # the same operator with partial pivoting is fine: the breakdown is the method's
    assert recs[(1.0, "toy_lu")]["status"] == "ok"


def test_lubench_run_with_the_installed_plugin(textbook_site, tmp_path):
    """The whole command, worker processes included, finds the plugin through its entry point."""
    pytest.importorskip("lubench.execution")
    suite = write(tmp_path / "s.yaml", f"""
        name: textbook
        plugins: [{TOY_PLUGIN}]
        operators:
          - name: toy_tridiag
            sizes: [31]
            params: {{d: [4.0, 1.0]}}
        methods: [textbook_lu]
    """)
    proc = lubench("run", str(suite), "-o", str(tmp_path / "run"), "--no-report",
                   "--no-progress", site=textbook_site)
    assert proc.returncode == 1, proc.stderr  # the breakdown at d = 1 is a failed case
    assert "1 case(s) failed" in proc.stderr and "toy_tridiag[d=1.0][n=31]" in proc.stderr
    records = [json.loads(line) for line in (tmp_path / "run" / "records.jsonl").open()]
    status = {json.loads(r["operator_params"])["d"]: (r["status"], r["error"]) for r in records}
    assert status[4.0] == ("ok", "")
    assert status[1.0][0] == "failed" and status[1.0][1].startswith("zero pivot at step 1")


def test_check_plugin_on_a_good_and_a_bad_method(textbook_site, tmp_path):
    bad = write(tmp_path / "bad_plugin.py", BAD_METHOD)
    proc = lubench("check-plugin", "textbook", "bad_lu", "--plugin", str(bad),
                   site=textbook_site)
    assert proc.returncode == 1, proc.stderr
    out = blocks(proc.stdout)
    assert set(out) == {"method textbook_lu", "method bad_lu"}
    assert all(line.startswith(("PASS", "SKIP")) for line in out["method textbook_lu"])
    assert "PASS  check_exact_residual" in out["method textbook_lu"]
    failures = {line.split(":")[0].split()[1]: line for line in out["method bad_lu"]
                if line.startswith("FAIL")}
    assert set(failures) == {"check_params_documented", "check_n_params", "check_pickle"}
    assert failures["check_params_documented"] == (
        "FAIL  check_params_documented: expected every parameter with a default, an annotation "
        "and a description; got 'tol' has no type annotation and no description under "
        "'Parameters' in the class docstring")
    assert failures["check_n_params"] == (
        "FAIL  check_n_params: expected n_params a positive integer; got n_params = 0 on the "
        "diag_dominant operator")
    assert failures["check_pickle"].startswith(
        "FAIL  check_pickle: expected the factorization to pickle; got ")
    assert proc.stdout.splitlines()[-1].startswith("19 passed, 3 failed")  # 2 × 11 checks

    proc = lubench("check-plugin", "textbook_lu[pivot_tol=0]", site=textbook_site)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0].startswith("method textbook_lu[pivot_tol=0.0] (plugin "
                                                  "textbook — lubench-textbook 0.1.0")
    assert proc.stdout.splitlines()[-1] == "11 passed, 0 failed, 0 skipped"


# --------------------------------------------------------------------------------------------
# A broken plugin does not break the tool
# --------------------------------------------------------------------------------------------
def test_broken_plugin_is_one_line_and_the_rest_works(textbook_site, tmp_path):
    broken = write(tmp_path / "broken.py", BROKEN_PLUGIN)
    good = write(tmp_path / "good.py", GOOD_METHOD.format(name="good_lu", cls="GoodLU"))
    args = ["--plugin", str(broken), "--plugin", str(good)]
    reason = "ModuleNotFoundError: No module named 'not_a_module_for_lubench_tests'"

    proc = lubench("plugins", *args, site=textbook_site)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert f"broken: broken: {reason}" in lines
    assert lines[lines.index("good: ok") + 2] == "    methods: good_lu"
    assert "textbook: ok" in lines

    proc = lubench("list", "--json", *args, site=textbook_site)
    assert proc.returncode == 0
    assert proc.stderr.strip() .splitlines()[-1] == (
        f"lubench: warning: plugin 'broken' (file {broken}) is broken: {reason}")
    methods = {m["name"] for m in json.loads(proc.stdout)["methods"]}
    assert {"good_lu", "textbook_lu"} <= methods

    # and the rest runs: a suite with the good plugin's method, the broken one loaded too
    proc = lubench("check-plugin", "good_lu", *args, site=textbook_site)
    assert proc.returncode == 0 and "11 passed, 0 failed, 0 skipped" in proc.stdout


def test_strict_and_disable(textbook_site, tmp_path):
    broken = write(tmp_path / "broken.py", BROKEN_PLUGIN)
    # the installed plugins are skipped so that the error is about this one whatever their state
    proc = lubench("plugins", "--plugin", str(broken), site=textbook_site,
                   env={"LUBENCH_STRICT_PLUGINS": "1",
                        "LUBENCH_DISABLE_PLUGINS": "operators,classical,learned,textbook"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"lubench: error: plugin 'broken' (file {broken}) is broken: ModuleNotFoundError: No "
        f"module named 'not_a_module_for_lubench_tests' (unset LUBENCH_STRICT_PLUGINS to skip "
        f"broken plugins)")

    proc = lubench("plugins", "--json", "--plugin", str(broken), site=textbook_site,
                   env={"LUBENCH_STRICT_PLUGINS": "1",
                        "LUBENCH_DISABLE_PLUGINS": "broken,textbook,learned"})
    assert proc.returncode == 0, proc.stderr
    rows = {p["name"]: p["status"] for p in json.loads(proc.stdout)}
    assert rows["broken"] == rows["textbook"] == "disabled (LUBENCH_DISABLE_PLUGINS)"
    assert "textbook_lu" not in lubench("list", site=textbook_site,
                                        env={"LUBENCH_DISABLE_PLUGINS": "textbook,learned"}).stdout


# --------------------------------------------------------------------------------------------
# By module and from a suite's plugins: list, in a user's shell
# --------------------------------------------------------------------------------------------
def test_module_plugin_from_pythonpath_and_from_the_working_directory(tmp_path):
    mods = tmp_path / "mods"
    write(mods / "my_ext" / "__init__.py", "")
    write(mods / "my_ext" / "methods.py", GOOD_METHOD.format(name="ext_lu", cls="ExtLU"))
    proc = lubench("plugins", "--json", "--plugin", "my_ext.methods", pythonpath=[mods])
    assert proc.returncode == 0, proc.stderr
    row = {p["name"]: p for p in json.loads(proc.stdout)}["my_ext.methods"]
    assert (row["status"], row["kind"], row["methods"]) == ("ok", "module", ["ext_lu"])

    # `--plugin my_ext.methods` typed in the folder that holds my_ext, no PYTHONPATH
    proc = lubench("plugins", "--json", "--plugin", "my_ext.methods", cwd=mods)
    assert proc.returncode == 0, proc.stderr
    assert {p["name"] for p in json.loads(proc.stdout)} >= {"my_ext.methods"}

    proc = lubench("plugins", "--plugin", "my_ext.nope", pythonpath=[mods])
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("lubench: error: plugin module not found: 'my_ext.nope' "
                                   "(No module named 'my_ext.nope')")


def test_suite_plugins_list_relative_to_the_suite_file(tmp_path):
    pytest.importorskip("lubench.execution")
    write(tmp_path / "project" / "local" / "my_method.py",
          GOOD_METHOD.format(name="local_lu", cls="LocalLU"))
    suite = write(tmp_path / "project" / "suite.yaml", f"""
        name: local
        plugins: [local/my_method.py, {TOY_PLUGIN}]
        operators: [{{name: toy_tridiag, sizes: [8, 16]}}]
        methods: [local_lu]
    """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = lubench("run", str(suite), "--dry-run", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert "2 cases × 1 repeat(s)" in proc.stdout
    assert "toy_tridiag[n=8] × local_lu" in proc.stdout


# --------------------------------------------------------------------------------------------
# A matrix-free operator, written from docs/plugins.md alone, pip-installed from its folder
# --------------------------------------------------------------------------------------------
DOCS = REPO / "docs" / "plugins.md"


def _docs_block(after: str, lang: str) -> str:
    """The first ```lang code block of docs/plugins.md after the line holding ``after``."""
    text = DOCS.read_text()
    start = text.index(f"```{lang}\n", text.index(after)) + len(lang) + 4
    return text[start:text.index("```\n", start)]


@pytest.fixture(scope="session")
def brownian_site(tmp_path_factory) -> Path:
    """brownian.py and its pyproject.toml as docs/plugins.md prints them, pip-installed."""
    src = tmp_path_factory.mktemp("brownian-src")
    (src / "brownian.py").write_text(_docs_block("## A matrix-free operator plugin", "python"))
    (src / "pyproject.toml").write_text(_docs_block("To share it, package it", "toml"))
    site = tmp_path_factory.mktemp("brownian-site")
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input",
           "--disable-pip-version-check", "--quiet", "--target", str(site)]
    if _builds_offline():
        cmd.append("--no-build-isolation")
    proc = subprocess.run([*cmd, str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"
    return site


def test_the_docs_matrix_free_operator_keeps_the_contract(brownian_site):
    proc = lubench("check-plugin", "brownian", site=brownian_site)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = blocks(proc.stdout)["operator brownian"]
    assert all(line.startswith("PASS") for line in lines), lines
    assert {"PASS  check_action", "PASS  check_matrix_free_memory"} <= set(lines)


def test_the_docs_matrix_free_operator_runs_through_every_method(brownian_site, monkeypatch):
    """Every built-in method at n = 64, where the core forms A for the methods that need the
    matrix: each runs (or refuses for its own reason). At n = 4096 the dense A (128 MiB)
    exceeds the form limit (a quarter of the 256 MiB memory limit): every method that needs
    the matrix is unsupported with that reason, before any work (no setup time), and every
    method that needs only entries or the action runs."""
    monkeypatch.syspath_prepend(str(brownian_site))
    monkeypatch.delenv("LUBENCH_DISABLE_PLUGINS", raising=False)
    reg = load_registry([])
    assert reg.provider[("operator", "brownian")] == "brownian"
    methods = sorted(reg.methods)
    suite = build_suite({
        "name": "brownian",
        "operators": [{"name": "brownian", "sizes": [64, 4096]}],
        "methods": [{"name": m, "budget": {"max_steps": 3}} if reg.method(m).family == "learned"
                    else m for m in methods],
        "memory_limit": "256MiB",
    }, reg)
    recs = {(c.n, c.method): run_case(c, plan=RunPlan(registry=reg)) for c in suite.cases}
    for name in methods:
        cls = reg.method(name)
        small, large = recs[(64, name)], recs[(4096, name)]
        assert small["status"] in ("ok", "unsupported"), (name, small["error"])
        if small["status"] == "ok":
            assert np.isfinite(small["solve_residual"]), name
        else:
            assert "not formed" not in small["error"], (name, small["error"])
        if getattr(cls, "needs", "matrix") == "matrix":
            assert large["status"] == "unsupported", (name, large["status"])
            assert large["error"] == (
                f"{name} needs the formed matrix; operator 'brownian' at n = 4096 is not formed "
                "(dense A: 128.0 MiB > form_limit 64.0 MiB)")
            assert large["setup_seconds"] is None
        else:
            assert large["status"] in ("ok", "unsupported"), (name, large["error"])
            assert "not formed" not in (large["error"] or ""), (name, large["error"])
