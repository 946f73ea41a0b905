"""The theorem registry: every catalogue id (N1, F2, B3, …) registers the checks the main job runs.

A check module (``verify/checks/<group>.py``) decorates one function per theorem::

    @register("F2", title="peri-LN linear growth", statement="‖x_k,i‖ ≤ ‖x_0,i‖ + Σ Δt_j C_out,j",
              provenance="paper claim K2, our statement", theory=("theory.forward.peri_norm_bound",),
              tests=("tests/test_forward.py",))
    def check_f2(ctx: Context) -> list[Tally]:
        ...

The function receives a :class:`Context` (level, seed, device) and returns its tallies; the same function is
what the tests call, and what the meta-tests call with a deliberately wrong theory injected as a keyword
argument, so the main job, the tests and the meta-tests can never drift apart.
"""
from __future__ import annotations

import dataclasses
import importlib
import platform
import time
from collections.abc import Callable

from verify.checks.record import Tally

LEVELS = ("quick", "full")

# Modules that hold registered checks, in report order. A later issue adds its module here.
CHECK_MODULES = (
    "verify.checks.norms",
    "verify.checks.forward",
    "verify.checks.init_moments",
    "verify.checks.oracle",
    "verify.checks.backward",
    "verify.checks.criterion",
    "verify.checks.uq",
    "verify.checks.trained",
    "verify.checks.neighbours",
    "verify.checks.sanity",
    "verify.checks.atlas",
    "verify.checks.certificates",
    "verify.checks.gallery",
)


@dataclasses.dataclass(frozen=True)
class Context:
    """How hard and where to check: ``level`` scales the number of cases, ``seed`` fixes every draw."""

    level: str = "quick"
    seed: int = 20251010
    device: str = "cpu"

    def __post_init__(self):
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {self.level!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        from verify.engine.devices import resolve_device

        resolve_device(self.device)

    def examples(self, quick: int, full: int | None = None) -> int:
        """Number of hypothesis examples / Monte-Carlo repeats for this level."""
        return quick if self.level == "quick" else (full if full is not None else 5 * quick)


@dataclasses.dataclass(frozen=True)
class TheoremCheck:
    id: str
    title: str
    statement: str
    provenance: str
    run: Callable[[Context], list[Tally]]
    theory: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()
    docs: str = "docs/theorems.md"


REGISTRY: dict[str, TheoremCheck] = {}


def register(theorem_id: str, *, title: str, statement: str, provenance: str, theory=(), tests=()):
    def deco(fn: Callable[[Context], list[Tally]]):
        if theorem_id in REGISTRY:
            raise ValueError(f"theorem id {theorem_id!r} registered twice")
        REGISTRY[theorem_id] = TheoremCheck(theorem_id, title, statement, provenance, fn, tuple(theory), tuple(tests))
        return fn

    return deco


def load_all() -> dict[str, TheoremCheck]:
    for name in CHECK_MODULES:
        importlib.import_module(name)
    return REGISTRY


def environment(device: str) -> dict:
    """Versions of everything a result depends on, and the device it ran on."""
    import hypothesis
    import mpmath
    import numpy
    import scipy
    import torch

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "mpmath": mpmath.__version__,
        "mpmath_backend": mpmath.libmp.BACKEND,
        "hypothesis": hypothesis.__version__,
        "torch": torch.__version__,
        "device": device,
    }
    if device.startswith("cuda"):
        info["device_name"] = torch.cuda.get_device_name(torch.device(device))
    return info


def run_checks(ctx: Context, only: list[str] | None = None, progress=print) -> dict:
    """Run the registered checks (all, or the ids in ``only``) under ``ctx``; one record per theorem id."""
    registry = load_all()
    ids = list(registry) if not only else only
    unknown = [i for i in ids if i not in registry]
    if unknown:
        raise ValueError(f"--only names unknown theorem ids {unknown}; known: {sorted(registry)}")
    records = []
    for tid in ids:
        chk = registry[tid]
        t0 = time.perf_counter()
        try:
            tallies = chk.run(ctx)
            error = None
        except Exception as exc:  # a crashing check is a failed check, reported, not a crashed report
            tallies, error = [], f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - t0
        verdict = "PASS" if tallies and all(t.passed for t in tallies) and error is None else "FAIL"
        rec = {
            "id": tid, "title": chk.title, "statement": chk.statement, "provenance": chk.provenance,
            "theory": list(chk.theory), "tests": list(chk.tests), "docs": chk.docs,
            "verdict": verdict, "error": error, "seconds": round(seconds, 3),
            "cases": sum(t.cases for t in tallies),
            "checks": [t.as_dict() for t in tallies],
        }
        records.append(rec)
        progress(f"{tid:<4} {chk.title}  [{verdict}, {seconds:.1f}s]" + (f"  ERROR {error}" if error else ""))
        for t in tallies:
            progress("     " + t.summary())
    return {"level": ctx.level, "seed": ctx.seed, "environment": environment(ctx.device), "theorems": records}
