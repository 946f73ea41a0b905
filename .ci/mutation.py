#!/usr/bin/env python3
"""Mutation run over theory/: does a wrong closed form make its tests fail?

    nice -n 19 .venv/bin/python .ci/mutation.py [--module norms,uq] [--timeout-factor 3] [--limit N] [--sample N]
                         [--only KEYS] [--json .ci/mutation-result.json] [--list] [--map-all] [--remap]

One semantic change at a time, made on the AST of one theory/ module:
  - arithmetic operator swapped (+ <-> -, * <-> /, // -> /, ** -> *),
  - exponent changed (x ** c -> x ** (c + 1) for a constant c),
  - numeric constant off by 10 % (float c -> 1.1 c; int c -> c + 1; 0 is left alone),
  - comparison negated (< -> >=, <= -> >, > -> <=, >= -> <, == -> !=, != -> ==),
  - unary minus dropped (-x -> x),
  - boolean operator swapped (and <-> or).
Docstrings, f-string contents, ``__all__`` and the messages of ``raise`` statements are not mutated.

Which tests a mutant runs: one coverage run per test file (``coverage`` with a context per test, cached under
.ci/mutation-map/ and redone only when the test file, tests/conftest.py, theory/ or verify/ change) maps every line
of theory/ to the tests that execute it, with each test's duration. A mutant then runs only the tests that execute
its statement, fastest first, with ``-x`` (stop at the first failure); a mutant in a function's default values runs
the tests that execute the function's body; a mutant on a line run only at import (a module constant, a
decorator) runs every test that executes the module; a mutant on a line no test executes survives at zero cost
(reported as ``uncovered``). The map covers the test files that import a theory module (``--map-all``: every test
file). Per-mutant timeout: ``--timeout-factor`` times the selected tests' mapped duration, at least 30 s; a
timeout counts as killed, as in mutmut, and is reported separately. The heavy imports (numpy, scipy, mpmath, torch,
hypothesis, pytest and every third-party module the mapped tests import) are made once in the parent; each mutant
is a fork, in a scratch copy of the repository (the worktree is never modified), that imports the mutated module
fresh, so a mutant costs its own tests, not an interpreter start nor a whole test file.

A mutant whose selected node ids cannot be run (pytest exit 4/5: the mutant broke collection, e.g. a module
constant used at import or in a ``parametrize`` now raises or renames the ids) is rerun on the whole test files of
those ids: a failure there — a collection error included — counts as killed (the suite would go red, as mutmut
counts a crashing test run), a pass as survived; ``error`` is left only when even the files collect nothing.

Mutants listed in .ci/mutation-equivalent.txt (``module:line:col:operator`` and a reason) are equivalent: they are
reported but not counted. Kill rate = (killed + timed out) / (mutants - equivalent). Exit status 1 if a module's
rate is < 95 %. ``--json`` merges into an existing file (modules not run keep their earlier entry).
Not in the default tier: minutes to tens of minutes per module on a shared 2-core machine.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import importlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT = ROOT / ".ci" / "mutation-equivalent.txt"
MAP_DIR = ROOT / ".ci" / "mutation-map"
OWN_PACKAGES = ("theory", "verify", "tests", "conftest")
THRESHOLD = 0.95

SWAP_BIN = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
            ast.Pow: ast.Mult}
NEG_CMP = {ast.Lt: ast.GtE, ast.LtE: ast.Gt, ast.Gt: ast.LtE, ast.GtE: ast.Lt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}


def _enter_scratch(scratch) -> None:
    """In a forked child: work in the scratch copy, import from it first, and silence stdout/stderr."""
    os.chdir(scratch)
    sys.path.insert(0, str(scratch))
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


def _protected(tree: ast.AST) -> set[int]:
    """ids of nodes never mutated: docstrings, f-strings, __all__, raise statements, type annotations."""
    out: set[int] = set()

    def mark(node):
        for n in ast.walk(node):
            out.add(id(n))

    for node in ast.walk(tree):
        if isinstance(node, (ast.Raise, ast.JoinedStr)) or isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            mark(node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for a in node.args.args + node.args.kwonlyargs + node.args.posonlyargs:
                if a.annotation is not None:
                    mark(a.annotation)
            if node.returns is not None:
                mark(node.returns)
        elif isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                mark(first)
    return out


def sites(tree: ast.AST) -> list[tuple[int, int, str, str]]:
    """Every mutation site: (line, col, operator, description), in source order."""
    protected = _protected(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in protected or not hasattr(node, "lineno"):
            continue
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Pow) and isinstance(node.right, ast.Constant) \
                    and isinstance(node.right.value, (int, float)) and not isinstance(node.right.value, bool):
                found.append((node.lineno, node.col_offset, "exp", f"** {node.right.value!r} -> ** {node.right.value!r}+1"))
            if type(node.op) in SWAP_BIN:
                found.append((node.lineno, node.col_offset, "binop",
                              f"{type(node.op).__name__} -> {SWAP_BIN[type(node.op)].__name__}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            if node.value != 0:
                found.append((node.lineno, node.col_offset, "const", f"{node.value!r} -> "
                              + (f"{node.value + 1!r}" if isinstance(node.value, int) else f"{node.value * 1.1!r}")))
        elif isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in NEG_CMP:
                    found.append((node.lineno, node.col_offset, f"cmp{i}",
                                  f"{type(op).__name__} -> {NEG_CMP[type(op)].__name__}"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            found.append((node.lineno, node.col_offset, "neg", "-x -> x"))
        elif isinstance(node, ast.BoolOp):
            found.append((node.lineno, node.col_offset, "bool",
                          f"{type(node.op).__name__} -> {'Or' if isinstance(node.op, ast.And) else 'And'}"))
    return sorted(found)


def mutate(source: str, line: int, col: int, op: str) -> str:
    """The source with the one mutation (line, col, op) applied."""
    tree = ast.parse(source)
    protected = _protected(tree)

    class M(ast.NodeTransformer):
        done = False

        def generic_visit(self, node):
            node = super().generic_visit(node)
            if self.done or id(node) in protected or getattr(node, "lineno", None) != line \
                    or getattr(node, "col_offset", None) != col:
                return node
            if op == "binop" and isinstance(node, ast.BinOp):
                self.done = True
                return ast.BinOp(left=node.left, op=SWAP_BIN[type(node.op)](), right=node.right)
            if op == "exp" and isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
                self.done = True
                return ast.BinOp(left=node.left, op=ast.Pow(), right=ast.Constant(node.right.value + 1))
            if op == "const" and isinstance(node, ast.Constant):
                self.done = True
                v = node.value
                return ast.Constant(v + 1 if isinstance(v, int) else v * 1.1)
            if op.startswith("cmp") and isinstance(node, ast.Compare):
                self.done = True
                i = int(op[3:])
                ops = list(node.ops)
                ops[i] = NEG_CMP[type(ops[i])]()
                return ast.Compare(left=node.left, ops=ops, comparators=node.comparators)
            if op == "neg" and isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
                self.done = True
                return node.operand
            if op == "bool" and isinstance(node, ast.BoolOp):
                self.done = True
                return ast.BoolOp(op=ast.Or() if isinstance(node.op, ast.And) else ast.And(), values=node.values)
            return node

    m = M()
    new = ast.fix_missing_locations(m.visit(tree))
    if not m.done:
        raise RuntimeError(f"mutation {line}:{col}:{op} not applied")
    return ast.unparse(new)


def tests_for(module: str) -> list[str]:
    """Test files that import theory.<module> directly (``theory.X``, ``from theory import X``)."""
    pats = (f"theory.{module}", f"from theory import {module}")
    out = []
    for f in sorted((ROOT / "tests").glob("test_*.py")):
        text = f.read_text()
        if any(p in text for p in pats) or _imports_from_list(text, module):
            out.append(f"tests/{f.name}")
    return out


def _imports_from_list(text: str, module: str) -> bool:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "theory" and any(a.name == module for a in node.names):
            return True
    return False


def load_equivalent() -> dict[str, str]:
    out = {}
    if EQUIVALENT.exists():
        for raw in EQUIVALENT.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            key, _, reason = line.partition(" ")
            out[key] = reason.strip()
    return out


# ---- the line -> tests map --------------------------------------------------------------------------------------
def _source_key(test_file: str) -> str:
    """What a test file's map depends on: its own text, the conftest, theory/ and verify/ (sha256)."""
    h = hashlib.sha256()
    for p in [ROOT / test_file, ROOT / "tests" / "conftest.py", *sorted((ROOT / "theory").glob("*.py")),
              *sorted((ROOT / "verify").rglob("*.py"))]:
        if p.exists():
            h.update(str(p.relative_to(ROOT)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


class _ContextPlugin:
    """pytest plugin of the mapping run: one coverage context per test (its node id) and each test's duration."""

    def __init__(self, cov):
        self.cov, self.durations = cov, {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):  # pytest calls it with both arguments
        self.cov.switch_context(item.nodeid)
        t0 = time.perf_counter()
        yield
        self.durations[item.nodeid] = time.perf_counter() - t0
        self.cov.switch_context("")


def _map_one(scratch: Path, test_file: str, out: Path) -> tuple[int, float]:
    """Fork; run ``test_file`` under coverage with a context per test; write the map to ``out``. (rc, seconds)"""
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        rc = 3
        try:
            _enter_scratch(scratch)
            import coverage
            import pytest

            cov = coverage.Coverage(data_file=None, include=[str(scratch / "theory" / "*.py")], branch=False)
            cov.start()
            plugin = _ContextPlugin(cov)
            rc = pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly", "--no-header",
                              test_file], plugins=[plugin])
            cov.stop()
            data = cov.get_data()
            lines: dict[str, dict[str, list[str]]] = {}
            for fname in data.measured_files():
                rel = str(Path(fname).resolve().relative_to(scratch.resolve()))
                by_line = data.contexts_by_lineno(fname)
                lines[rel] = {str(ln): sorted(set(ctx)) for ln, ctx in by_line.items()}
            third_party = sorted(
                name for name, mod in list(sys.modules.items())
                if mod is not None and name.split(".")[0] not in OWN_PACKAGES and not name.startswith("__")
                and not str(getattr(mod, "__file__", "") or "").startswith(str(scratch)))
            out.write_text(json.dumps({"key": _source_key(test_file), "rc": int(rc), "lines": lines,
                                       "durations": plugin.durations, "imports": third_party}))
        except BaseException as exc:  # noqa: BLE001
            try:
                out.with_suffix(".err").write_text(repr(exc))
            except OSError:
                pass
        os._exit(int(rc))
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), time.perf_counter() - t0


def build_map(scratch: Path, test_files: list[str], remap: bool) -> dict:
    """The merged map {lines: {file: {line: {nodeid}}}, durations: {nodeid: s}, imports: [...]}, cached per file."""
    MAP_DIR.mkdir(parents=True, exist_ok=True)
    merged = {"lines": {}, "durations": {}, "imports": set(), "failed": []}
    for tf in test_files:
        cache = MAP_DIR / (tf.replace("/", "__") + ".json")
        entry = None
        if cache.exists() and not remap:
            try:
                entry = json.loads(cache.read_text())
            except ValueError:
                entry = None
            if entry is not None and entry.get("key") != _source_key(tf):
                entry = None
        if entry is None:
            rc, secs = _map_one(scratch, tf, cache)
            entry = json.loads(cache.read_text()) if cache.exists() else {"rc": rc, "lines": {}, "durations": {}}
            if entry.get("key") != _source_key(tf):  # the child died before writing a fresh map
                entry = {"rc": rc, "lines": {}, "durations": {}, "imports": []}
            print(f"  map {tf}: {len(entry['durations'])} tests, rc {entry['rc']} [{secs:.0f}s]", flush=True)
        if entry["rc"] != 0:
            merged["failed"].append(tf)
            print(f"  map {tf}: the unmutated tests fail (rc {entry['rc']}); its tests are left out", flush=True)
            continue
        for f, by_line in entry["lines"].items():
            dst = merged["lines"].setdefault(f, {})
            for ln, ctxs in by_line.items():
                dst.setdefault(int(ln), set()).update(ctxs)
        merged["durations"].update(entry["durations"])
        merged["imports"].update(entry.get("imports", []))
    return merged


def _site_lines(tree: ast.AST) -> dict[tuple[int, int], tuple[str, range]]:
    """For each (line, col) of a node: ('default', the function body's lines) for a function's default values,
    else ('stmt', the lines from its innermost statement's first line to the node's last line)."""
    out: dict[tuple[int, int], tuple[str, range]] = {}

    def visit(node, stmt):
        if isinstance(node, ast.stmt):
            stmt = node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            body = node.body if isinstance(node.body, list) else [node.body]
            lines = range(body[0].lineno, max(b.end_lineno or b.lineno for b in body) + 1)
            for d in [*node.args.defaults, *(k for k in node.args.kw_defaults if k is not None)]:
                for n in ast.walk(d):
                    if hasattr(n, "lineno"):
                        out.setdefault((n.lineno, n.col_offset), ("default", lines))
            for dec in getattr(node, "decorator_list", []):
                visit(dec, stmt)
            for b in body:
                visit(b, stmt)
            return
        if hasattr(node, "lineno"):
            out.setdefault((node.lineno, node.col_offset),
                           ("stmt", range(stmt.lineno, (node.end_lineno or node.lineno) + 1)))
        for child in ast.iter_child_nodes(node):
            visit(child, stmt)

    for top in tree.body:
        visit(top, top)
    return out


def select_tests(tree: ast.AST, module_file: str, mapping: dict) -> dict[tuple[int, int], tuple[str, list[str]]]:
    """For each (line, col) of the module: (how it was chosen, the node ids to run, fastest first)."""
    by_line = mapping["lines"].get(module_file, {})
    durations = mapping["durations"]
    every = sorted({c for ctxs in by_line.values() for c in ctxs if c}, key=lambda n: (durations.get(n, 0.0), n))
    scopes = _site_lines(tree)
    out = {}
    for (ln, col), (kind, lines) in scopes.items():
        ctxs: set[str] = set()
        for x in lines:
            ctxs |= by_line.get(x, set())
        tests = {c for c in ctxs if c}
        if kind == "default":
            how = "default" if tests else "uncovered"
        elif "" in ctxs:  # run at import: a module constant, a decorator, a table built at import
            how, tests = "import", tests | set(every)
        else:
            how = "line" if tests else "uncovered"
        out[(ln, col)] = (how, sorted(tests, key=lambda n: (durations.get(n, 0.0), n)))
    return out


def run_tests(scratch: Path, tests: list[str], timeout: float) -> tuple[str, float]:
    """Fork, run pytest on ``tests`` (node ids) in ``scratch`` with -x; 'killed', 'survived', 'timeout' or
    'error' (pytest could not select them: usage error or nothing collected), and the seconds."""
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        try:
            _enter_scratch(scratch)
            import pytest

            # no:unraisableexception: its gc.collect() x5 at exit walks torch's heap (1.6 s of a 3 s mutant)
            rc = pytest.main(["-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly",
                              "-p", "no:unraisableexception", "--no-header", *tests])
        except BaseException:  # noqa: BLE001
            rc = 3
        os._exit(int(rc))
    deadline = t0 + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(status)
            outcome = "survived" if rc == 0 else "error" if rc in (4, 5) else "killed"
            return outcome, time.perf_counter() - t0
        if time.perf_counter() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", time.perf_counter() - t0
        time.sleep(0.02)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--module", default="", help="comma-separated theory modules (default: all)")
    ap.add_argument("--timeout-factor", type=float, default=3.0)
    ap.add_argument("--limit", type=int, default=None, help="at most this many mutants per module (a smoke run)")
    ap.add_argument("--sample", type=int, default=None,
                    help="a seeded random sample of this many mutants per module (the rate is then an estimate)")
    ap.add_argument("--only", default="", help="comma-separated mutant keys module:line:col:op (rerun survivors)")
    ap.add_argument("--json", type=Path, default=None, help="merge every mutant's outcome into this file")
    ap.add_argument("--list", action="store_true", help="list the mutants and their test files, run nothing")
    ap.add_argument("--map-all", action="store_true", help="map every test file, not only those importing theory/")
    ap.add_argument("--remap", action="store_true", help="redo the line -> tests map even where it is cached")
    args = ap.parse_args(argv)
    if args.timeout_factor <= 0:
        ap.error(f"--timeout-factor must be > 0, got {args.timeout_factor}")
    for name in ("limit", "sample"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=args.json.parent):
                pass
        except OSError as exc:
            ap.exit(2, f"mutation: error: --json {args.json} is not writable ({exc.strerror or exc})\n")
    all_modules = sorted(p.stem for p in (ROOT / "theory").glob("*.py") if not p.stem.startswith("_"))
    modules = [m.strip() for m in args.module.split(",") if m.strip()] or all_modules
    unknown = sorted(set(modules) - set(all_modules))
    if unknown:
        ap.exit(2, f"mutation: error: --module names unknown modules {unknown}; known: {all_modules}\n")
    only = {k.strip() for k in args.only.split(",") if k.strip()}
    equivalent = load_equivalent()

    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    os.environ.setdefault("HYPOTHESIS_PROFILE", "default")
    os.environ["TORCH_NUM_THREADS"] = "1"
    os.environ.pop("SWEEP_MODULES", None)  # the map is made over the whole sweep: no narrowing
    sys.dont_write_bytecode = True
    if not args.list:  # the heavy imports, once, before any fork
        try:
            import coverage  # noqa: F401
        except ImportError:
            ap.exit(2, "mutation: error: the line -> tests map needs coverage: pip install -c constraints-cpu.txt -e '.[test,mutation]'\n")
        import hypothesis  # noqa: F401
        import mpmath  # noqa: F401
        import numpy  # noqa: F401
        import scipy.special  # noqa: F401
        import torch

        torch.set_num_threads(1)

    if args.map_all:
        map_files = [f"tests/{f.name}" for f in sorted((ROOT / "tests").glob("test_*.py"))]
    else:
        map_files = sorted({t for m in all_modules for t in tests_for(m)} | (
            {"tests/test_inputs.py"} if (ROOT / "tests" / "test_inputs.py").exists() else set()))

    results, summary = [], {}
    previous = {}
    if args.json is not None and args.json.exists():
        try:
            previous = json.loads(args.json.read_text())
        except ValueError:
            previous = {}
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        scratch = Path(tmp) / "repo"
        mapping = None
        if not args.list:
            shutil.copytree(ROOT, scratch, ignore=shutil.ignore_patterns(
                ".venv", ".git", "__pycache__", "*.pyc", ".hypothesis", ".pytest_cache", "figures", "*.egg-info",
                "mutation-map"))
            if (ROOT / "figures").exists():  # figures' cached runs are data some tests read
                (scratch / "figures").symlink_to(ROOT / "figures")
            t_map = time.perf_counter()
            print(f"map: {len(map_files)} test files (cached under {MAP_DIR.relative_to(ROOT)})", flush=True)
            mapping = build_map(scratch, map_files, args.remap)
            print(f"map: {len(mapping['durations'])} tests [{time.perf_counter() - t_map:.0f}s]", flush=True)
            for name in sorted(mapping["imports"]):  # every third-party module the tests import, once, here
                try:
                    importlib.import_module(name)
                except BaseException:  # noqa: BLE001, S110 - an optional import that fails here fails in the child too
                    pass
            import compileall
            import gc

            # bytecode for the unmutated sources, once (a child writes none): the mutated module's is removed below
            for pkg in ("verify", "theory"):
                compileall.compile_dir(scratch / pkg, quiet=1, workers=1)
            gc.collect()
            gc.freeze()  # the parent's objects are permanent: a child's collections do not walk them
        for module in modules:
            path = ROOT / "theory" / f"{module}.py"
            source = path.read_text()
            tree = ast.parse(source)
            mutants = [(ln, col, op, desc) for ln, col, op, desc in sites(tree)]
            if only:
                mutants = [m for m in mutants if f"{module}:{m[0]}:{m[1]}:{m[2]}" in only]
            if args.sample is not None and args.sample < len(mutants):
                import random

                mutants = sorted(random.Random(f"mutation:{module}").sample(mutants, args.sample))
            if args.limit is not None:
                mutants = mutants[: args.limit]
            if args.list:
                print(f"{module}: {len(mutants)} mutants; test files importing it: "
                      f"{' '.join(tests_for(module)) or '(none)'}")
                for ln, col, op, desc in mutants:
                    key = f"{module}:{ln}:{col}:{op}"
                    print(f"  {key:<32} {desc}" + ("   [equivalent]" if key in equivalent else ""))
                continue
            if not mutants:
                continue
            chosen = select_tests(tree, f"theory/{module}.py", mapping)
            durations = mapping["durations"]
            target = scratch / "theory" / f"{module}.py"
            for pyc in (scratch / "theory" / "__pycache__").glob(f"{module}.*.pyc"):
                pyc.unlink()  # else an unmutated pyc with the mutant's size and mtime second could be loaded
            n_tests = len({t for how, ts in chosen.values() for t in ts})
            print(f"{module}: {len(mutants)} mutants over {n_tests} covering tests", flush=True)
            counts = {"killed": 0, "timeout": 0, "survived": 0, "uncovered": 0, "error": 0, "equivalent": 0}
            t_mod = time.perf_counter()
            for ln, col, op, desc in mutants:
                key = f"{module}:{ln}:{col}:{op}"
                how, tests = chosen.get((ln, col), ("uncovered", []))
                try:
                    target.write_text(mutate(source, ln, col, op))
                except RuntimeError as exc:  # pragma: no cover - a mutator bug
                    print(f"  {key}: {exc}", flush=True)
                    continue
                try:
                    if tests:
                        timeout = max(30.0, args.timeout_factor * sum(durations.get(t, 1.0) for t in tests))
                        outcome, secs = run_tests(scratch, tests, timeout)
                        if outcome == "error":  # collection broke: rerun the whole files (module docstring)
                            files = sorted({t.split("::")[0] for t in tests})
                            file_timeout = max(30.0, args.timeout_factor * sum(
                                v for n, v in durations.items() if n.split("::")[0] in files))
                            outcome, more = run_tests(scratch, files, file_timeout)
                            secs, how = secs + more, how + "+files"
                    else:
                        outcome, secs = "uncovered", 0.0
                finally:
                    target.write_text(source)
                if outcome in ("survived", "uncovered") and key in equivalent:
                    outcome = "equivalent"
                counts[outcome] += 1
                line_src = source.splitlines()[ln - 1].strip()
                results.append({"key": key, "description": desc, "outcome": outcome, "seconds": round(secs, 2),
                                "selection": how, "tests": len(tests), "source": line_src})
                if outcome in ("survived", "uncovered", "error", "equivalent"):
                    print(f"  {outcome.upper():<10} {key:<32} {desc:<24} [{how}, {len(tests)} tests] | "
                          f"{line_src[:80]}", flush=True)
            counted = len(mutants) - counts["equivalent"]
            rate = (counts["killed"] + counts["timeout"]) / counted if counted else 1.0
            seconds = round(time.perf_counter() - t_mod)
            summary[module] = dict(counts, mutants=len(mutants), rate=round(rate, 4), seconds=seconds,
                                   run="all" if len(mutants) == len(sites(tree)) else f"{len(mutants)} of {len(sites(tree))}")
            print(f"{module}: killed {counts['killed']} + timeout {counts['timeout']} of {counted} non-equivalent "
                  f"({rate:.1%}); {counts['survived']} survived, {counts['uncovered']} uncovered, {counts['error']} "
                  f"error, {counts['equivalent']} equivalent [{seconds}s, {seconds / max(1, len(mutants)):.1f}s "
                  f"per mutant]", flush=True)
            if args.json is not None:
                merged_summary = dict(previous.get("summary", {}), **summary)
                ran = {r["key"].split(":")[0] for r in results}
                kept = [r for r in previous.get("mutants", []) if r["key"].split(":")[0] not in ran]
                args.json.write_text(json.dumps({"summary": dict(sorted(merged_summary.items())),
                                                 "mutants": kept + results}, indent=1) + "\n")
    if args.list:
        return 0
    for module, s in summary.items():
        print(f"{module:<14} {s['rate']:7.1%}  ({s['killed'] + s['timeout']}/{s['mutants'] - s['equivalent']}, "
              f"{s['equivalent']} equivalent)")
    return 0 if all(s["rate"] >= THRESHOLD for s in summary.values()) else 1

if __name__ == "__main__":
    sys.exit(main())
