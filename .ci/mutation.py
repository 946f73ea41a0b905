#!/usr/bin/env python3
"""Mutation run over theory/: does a wrong closed form make its tests fail?

    nice -n 19 .venv/bin/python .ci/mutation.py [--module norms,uq] [--timeout-factor 3] [--limit N]
                                                 [--json .ci/mutation-result.json] [--list]

One semantic change at a time, made on the AST of one theory/ module:
  - arithmetic operator swapped (+ <-> -, * <-> /, // -> /, ** -> *),
  - exponent changed (x ** c -> x ** (c + 1) for a constant c),
  - numeric constant off by 10 % (float c -> 1.1 c; int c -> c + 1; 0 is left alone),
  - comparison negated (< -> >=, <= -> >, > -> <=, >= -> <, == -> !=, != -> ==),
  - unary minus dropped (-x -> x),
  - boolean operator swapped (and <-> or).
Docstrings, f-string contents, ``__all__`` and the messages of ``raise`` statements are not mutated.

Each mutant runs against the test files that import the module (directly ``theory.X`` / ``from theory import X``),
in a scratch copy of the repository (the worktree is never modified), with ``-x`` (stop at the first failure) and a
per-mutant timeout (``--timeout-factor`` times the unmutated run, at least 30 s; a timeout counts as killed, as in
mutmut). The heavy imports (numpy, scipy, mpmath, torch, hypothesis, pytest) are made once in the parent; each
mutant is a fork that imports the mutated module fresh, so a mutant costs its tests, not an interpreter start.

Mutants listed in .ci/mutation-equivalent.txt (``module:line:col:operator`` and a reason) are equivalent: they are
reported but not counted. Kill rate = killed / (mutants - equivalent). Exit status 1 if a module's rate is < 95 %.
Not in the default tier: it takes tens of minutes per module on a shared 2-core machine.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT = ROOT / ".ci" / "mutation-equivalent.txt"
THRESHOLD = 0.95

SWAP_BIN = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
            ast.Pow: ast.Mult}
NEG_CMP = {ast.Lt: ast.GtE, ast.LtE: ast.Gt, ast.Gt: ast.LtE, ast.GtE: ast.Lt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}


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
    """Test files that import theory.<module> directly, and the bad-input sweep (it finds every module itself)."""
    pats = (f"theory.{module}", f"from theory import {module}")
    out = []
    for f in sorted((ROOT / "tests").glob("test_*.py")):
        text = f.read_text()
        if any(p in text for p in pats) or _imports_from_list(text, module):
            out.append(f"tests/{f.name}")
    if (ROOT / "tests" / "test_inputs.py").exists():
        out.append("tests/test_inputs.py")
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


def run_tests(scratch: Path, tests: list[str], timeout: float, module: str = "") -> tuple[str, float]:
    """Fork, run pytest on ``tests`` in ``scratch``; 'killed', 'survived' or 'timeout', and the seconds."""
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.chdir(scratch)
            os.environ["SWEEP_MODULES"] = module  # tests/test_inputs.py: only the mutated module's functions
            sys.path.insert(0, str(scratch))
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            import pytest

            rc = pytest.main(["-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly",
                              "--no-header", *tests])
        except BaseException:  # noqa: BLE001
            rc = 3
        os._exit(int(rc))
    deadline = t0 + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(status)
            return ("survived" if rc == 0 else "killed"), time.perf_counter() - t0
        if time.perf_counter() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", time.perf_counter() - t0
        time.sleep(0.05)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--module", default="", help="comma-separated theory modules (default: all)")
    ap.add_argument("--timeout-factor", type=float, default=3.0)
    ap.add_argument("--limit", type=int, default=None, help="at most this many mutants per module (a smoke run)")
    ap.add_argument("--sample", type=int, default=None,
                    help="a seeded random sample of this many mutants per module (the rate is then an estimate)")
    ap.add_argument("--only", default="", help="comma-separated mutant keys module:line:col:op (rerun survivors)")
    ap.add_argument("--json", type=Path, default=None, help="write every mutant's outcome here")
    ap.add_argument("--list", action="store_true", help="list the mutants and their test files, run nothing")
    args = ap.parse_args(argv)
    if args.timeout_factor <= 0:
        ap.error(f"--timeout-factor must be > 0, got {args.timeout_factor}")
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
    sys.dont_write_bytecode = True
    if not args.list:  # the heavy imports, once, before any fork
        import hypothesis  # noqa: F401
        import mpmath  # noqa: F401
        import numpy  # noqa: F401
        import pytest  # noqa: F401
        import scipy.special  # noqa: F401
        import torch

        torch.set_num_threads(1)

    results, summary = [], {}
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        scratch = Path(tmp) / "repo"
        if not args.list:
            shutil.copytree(ROOT, scratch, ignore=shutil.ignore_patterns(
                ".venv", ".git", "__pycache__", "*.pyc", ".hypothesis", ".pytest_cache", "figures", "*.egg-info"))
            if (ROOT / "figures").exists():  # figures' cached runs are data some tests read
                (scratch / "figures").symlink_to(ROOT / "figures")
        for module in modules:
            path = ROOT / "theory" / f"{module}.py"
            source = path.read_text()
            tests = tests_for(module)
            mutants = [(ln, col, op, desc) for ln, col, op, desc in sites(ast.parse(source))]
            if only:
                mutants = [m for m in mutants if f"{module}:{m[0]}:{m[1]}:{m[2]}" in only]
            if args.sample is not None and args.sample < len(mutants):
                import random

                mutants = sorted(random.Random(f"mutation:{module}").sample(mutants, args.sample))
            if args.limit is not None:
                mutants = mutants[: args.limit]
            if args.list:
                print(f"{module}: {len(mutants)} mutants; tests: {' '.join(tests) or '(none)'}")
                for ln, col, op, desc in mutants:
                    key = f"{module}:{ln}:{col}:{op}"
                    print(f"  {key:<32} {desc}" + ("   [equivalent]" if key in equivalent else ""))
                continue
            if not mutants:
                continue
            target = scratch / "theory" / f"{module}.py"
            if not tests:
                print(f"{module}: no test file imports it; every mutant survives", flush=True)
            status, base_s = run_tests(scratch, tests, 3600, module) if tests else ("survived", 0.0)
            if status != "survived":
                print(f"{module}: the unmutated tests fail ({status}); fix them first", flush=True)
                return 1
            timeout = max(30.0, args.timeout_factor * base_s)
            print(f"{module}: {len(mutants)} mutants, tests {' '.join(tests)} ({base_s:.0f}s unmutated, timeout "
                  f"{timeout:.0f}s)", flush=True)
            counts = {"killed": 0, "timeout": 0, "survived": 0, "equivalent": 0}
            t_mod = time.perf_counter()
            for ln, col, op, desc in mutants:
                key = f"{module}:{ln}:{col}:{op}"
                try:
                    target.write_text(mutate(source, ln, col, op))
                except RuntimeError as exc:  # pragma: no cover - a mutator bug
                    print(f"  {key}: {exc}", flush=True)
                    continue
                try:
                    outcome, secs = run_tests(scratch, tests, timeout, module) if tests else ("survived", 0.0)
                finally:
                    target.write_text(source)
                if outcome == "survived" and key in equivalent:
                    outcome = "equivalent"
                counts[outcome] += 1
                results.append({"key": key, "description": desc, "outcome": outcome, "seconds": round(secs, 1),
                                    "source": source.splitlines()[ln - 1].strip()})
                if outcome in ("survived", "equivalent"):
                    print(f"  {outcome.upper():<10} {key:<32} {desc:<24} | {source.splitlines()[ln - 1].strip()[:90]}",
                          flush=True)
            counted = len(mutants) - counts["equivalent"]
            rate = (counts["killed"] + counts["timeout"]) / counted if counted else 1.0
            summary[module] = dict(counts, mutants=len(mutants), rate=rate, seconds=round(time.perf_counter() - t_mod))
            print(f"{module}: killed {counts['killed']} + timeout {counts['timeout']} of {counted} non-equivalent "
                  f"({rate:.1%}); {counts['survived']} survived, {counts['equivalent']} equivalent "
                  f"[{time.perf_counter() - t_mod:.0f}s]", flush=True)
            if args.json is not None:
                args.json.write_text(json.dumps({"summary": summary, "mutants": results}, indent=1))
    if args.list:
        return 0
    for module, s in summary.items():
        print(f"{module:<14} {s['rate']:7.1%}  ({s['killed'] + s['timeout']}/{s['mutants'] - s['equivalent']}, "
              f"{s['equivalent']} equivalent)")
    return 0 if all(s["rate"] >= THRESHOLD for s in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
